"""gunicorn with several workers: /metrics reports the sum over all workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import requests
from jewelry_monitoring_django.multiproc_files import FileName, read_entries

from devkit.services import RedisService
from devkit.shopapp import gunicorn_server, scrape, shop_env

pytestmark = pytest.mark.services

VIEW = "django_http_requests_total_by_view_transport_method_total"
# A view the app counts (the probes /healthz and /readyz are not), and its URL.
COUNTED, COUNTED_PATH = "material-list", "/api/materials/"


def _round(port: int, width: int) -> None:
    """``width`` concurrent requests of the counted view, spread over the workers.

    A sync gunicorn worker serves one connection at a time: each socket sends an
    incomplete request first, which pins the worker that accepted it, so the next socket
    has to be accepted by another worker. Then all requests are completed.
    """
    socks = []
    for _ in range(width):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(f"GET {COUNTED_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        socks.append(s)
    time.sleep(0.05)
    for s in socks:
        with s:
            s.sendall(b"Connection: close\r\n\r\n")
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert "results" in json.loads(body), body[:200]


def counted_by(prom_dir: Path, pid: int) -> float:
    """The requests of the counted view in one worker's own counter file."""
    path = prom_dir / f"counter_{pid}.db"
    if not path.exists():
        return 0.0
    for entry in read_entries(path):
        _family, sample, labels, _help = json.loads(entry.key)
        if sample == VIEW and labels.get("view") == COUNTED:
            return entry.value
    return 0.0


def test_counts_from_all_workers_are_merged(shop_db: str, redis: RedisService, tmp_path) -> None:  # type: ignore[no-untyped-def]
    prom_dir = tmp_path / "prom"
    prom_dir.mkdir()
    stale = prom_dir / "counter_424242.db"
    stale.write_bytes(b"left over from a previous run")
    env = shop_env(shop_db, redis.url_for(4), PROMETHEUS_MULTIPROC_DIR=str(prom_dir))
    with gunicorn_server(env, workers=3) as server:
        assert not stale.exists()  # on_starting emptied the directory
        workers = server.worker_pids()
        assert len(workers) == 3
        before = scrape(server.url + "/metrics").value(VIEW, view=COUNTED)
        rounds = 30
        for _ in range(rounds):
            _round(server.port, 3)
        n = 3 * rounds
        # Each worker counted its share in its own file (about one request a round: under load
        # a worker that finished its request may accept the next socket of the same round).
        shares = {pid: counted_by(prom_dir, pid) for pid in workers}
        assert all(shares.values()), f"requests were not spread over all workers: {shares}"
        assert sum(shares.values()) == n, shares
        after = scrape(server.url + "/metrics")
        assert after.value(VIEW, view=COUNTED) - before == n

        # A worker exits (max_requests, crash, OOM kill...): its counts must survive.
        victim = workers[0]
        os.kill(victim, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            current = server.worker_pids()
            if victim not in current and len(current) == 3:
                break
            time.sleep(0.2)
        else:
            pytest.fail("gunicorn did not replace the worker")
        later = scrape(server.url + "/metrics")
        assert later.value(VIEW, view=COUNTED) - before == n
        assert "child_exit" not in server.log()  # no hook errors logged
        assert "Traceback" not in server.log()


def test_recycled_workers_are_folded_and_nothing_is_lost(
    shop_db: str, redis: RedisService, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """gunicorn's max_requests recycles the workers over and over: every exited worker's files
    are folded into the totals by the package's child_exit, so the directory holds the live
    workers' files and one generation of totals, and the counts are exact."""
    prom_dir = tmp_path / "prom"
    env = shop_env(
        shop_db, redis.url_for(5), PROMETHEUS_MULTIPROC_DIR=str(prom_dir), GUNICORN_MAX_REQUESTS="8"
    )
    with gunicorn_server(env, workers=2) as server:
        before = scrape(server.url + "/metrics").value(VIEW, view=COUNTED)
        for _ in range(120):
            assert requests.get(server.url + COUNTED_PATH, timeout=10).status_code == 200
        # gunicorn logs each worker it recycles after max_requests (at its default log level).
        recycled = server.log().count("Autorestarting worker after current request.")
        assert recycled >= 10, "max_requests did not recycle the workers"
        deadline = time.monotonic() + 30
        while True:  # the last worker to reach max_requests may still be exiting
            after = scrape(server.url + "/metrics")
            live = {str(pid) for pid in server.worker_pids()}
            processes = {
                name.process for f in prom_dir.iterdir() if (name := FileName.parse(f.name))
            }
            if (processes <= live and len(live) == 2) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert after.value(VIEW, view=COUNTED) - before == 120
        assert processes <= live, (processes, live)
        assert len([f for f in prom_dir.iterdir() if f.name.startswith("folded.")]) == 1
        assert "Traceback" not in server.log()
