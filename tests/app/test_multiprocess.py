"""gunicorn with several workers: /metrics reports the sum over all workers."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from devkit.services import RedisService
from devkit.shopapp import gunicorn_server, scrape, shop_env

pytestmark = pytest.mark.services

VIEW = "django_http_requests_total_by_view_transport_method_total"


def _hit(url: str) -> int:
    # a fresh connection per request, so the kernel hands them to different workers
    with requests.Session() as s:
        resp = s.get(url, timeout=10, headers={"Connection": "close"})
        assert resp.status_code == 200
        return int(resp.json()["pid"])


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
        before = scrape(server.url + "/metrics").value(VIEW, view="healthz")
        n = 90
        with ThreadPoolExecutor(max_workers=6) as pool:
            pids = list(pool.map(_hit, [server.url + "/healthz"] * n))
        assert len(set(pids)) >= 2, "requests were not spread over several workers"
        assert set(pids) <= set(workers)
        after = scrape(server.url + "/metrics")
        assert after.value(VIEW, view="healthz") - before == n
        # one set of files per worker that served something
        files = {p.name for p in prom_dir.iterdir()}
        assert {f"counter_{pid}.db" for pid in set(pids)} <= files

        # A worker exits (max_requests, crash, OOM kill...): its counts must survive.
        victim = pids[0]
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
        assert later.value(VIEW, view="healthz") - before == n
        assert "child_exit" not in server.log()  # no hook errors logged
        assert "Traceback" not in server.log()
