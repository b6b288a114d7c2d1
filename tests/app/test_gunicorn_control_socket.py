"""gunicorn's control socket under the package README's Kubernetes snippet.

gunicorn >= 25.1 starts a control server in the master (for ``gunicornc``) on a Unix socket
whose directory it creates at start: ``$XDG_RUNTIME_DIR``, else ``$HOME/.gunicorn``. In a pod
with a read-only root filesystem and a user without a home (``HOME=/``) that is
``/.gunicorn``, and the master logs ``Control server error: [Errno 30] Read-only file
system: '/.gunicorn'`` at every start. The shop's config file (the one the snippet runs)
turns the control server off.

A read-only root cannot be made here without privileges a test should not use; an
unwritable ``HOME`` (``/sys``: even root may not create a directory there) fails the same
way.
"""

from __future__ import annotations

from pathlib import Path

from jewelry_monitoring_django import gunicorn_config

from devkit.shopapp import APP_DIR, gunicorn_server, shop_env

UNWRITABLE_HOME = "/sys"


def snippet_env(tmp_path: Path) -> dict[str, str]:
    """The pod's environment as far as gunicorn's control socket cares: no XDG_RUNTIME_DIR
    (shop_env does not pass it on) and a HOME nothing can be created in."""
    return shop_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", HOME=UNWRITABLE_HOME)


def test_the_shop_config_turns_the_control_socket_off(tmp_path: Path) -> None:
    config = gunicorn_config.read(["-c", "gunicorn.conf.py"], snippet_env(tmp_path), str(APP_DIR))
    assert config.control_socket is None


def test_gunicorn_starts_without_a_control_server_error(tmp_path: Path) -> None:
    with gunicorn_server(snippet_env(tmp_path), workers=1) as server:
        log = server.log_path.read_text()
    assert "Listening at" in log  # the log is gunicorn's, read after it started
    # Neither "Control server error: ..." nor "Control socket listening at ...".
    assert [line for line in log.splitlines() if "control s" in line.lower()] == []
