"""The devkit launchers start real services and leave nothing behind."""

from __future__ import annotations

import os
import socket
import urllib.request

import psycopg
import pytest

from devkit.services import nginx_service, postgres_service, redis_service

pytestmark = pytest.mark.services


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_postgres_starts_with_password_auth_and_cleans_up() -> None:
    with postgres_service(database="x1") as pg:
        with psycopg.connect(pg.dsn) as conn:
            assert conn.execute("select current_database()").fetchone() == ("x1",)
        other = pg.createdb("other")
        with psycopg.connect(other) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(pg.dsn.replace(pg.password, "wrong"), connect_timeout=5)
        pg.dropdb("other")
        port, tmp = pg.port, pg.datadir.parent
    assert not _listening(port)
    assert not tmp.exists()


def test_redis_starts_without_persistence_and_cleans_up() -> None:
    with redis_service() as r:
        assert r.command("SET", "k", "v") == b"+OK"
        assert r.command("CONFIG", "GET", "save").startswith(b"*2")
        port = r.port
    assert not _listening(port)


def test_nginx_runs_given_server_block_and_cleans_up() -> None:
    def site(port: int, _: int) -> str:
        return f"server {{ listen 127.0.0.1:{port}; location / {{ return 200 'hi'; }} }}"

    with nginx_service(site) as ngx:
        assert urllib.request.urlopen(ngx.url).read() == b"hi"
        pid = int((ngx.prefix / "nginx.pid").read_text())
        prefix, port = ngx.prefix, ngx.port
    assert not _alive(pid)
    assert not prefix.exists()
    assert not _listening(port)
