"""Exemplars on the request-latency histogram (issue 21.2): the shop under gunicorn (2 workers,
multiprocess mode) traced with OpenTelemetry links each latency bucket to a request's trace,
and a real Prometheus 3 with exemplar storage stores and returns them. Without OpenTelemetry,
the exposition is the same as before and OpenTelemetry is never imported."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from jewelry_monitoring_django import exemplars
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from devkit.prometheus import Process
from devkit.services import LOOPBACK, RedisService
from devkit.shopapp import APP_DIR, gunicorn_server, shop_env
from devkit.toolchain import cache_dir

LATENCY = "django_http_requests_latency_seconds_by_view_method"
OPENMETRICS = "application/openmetrics-text;version=1.0.0"


def test_exemplar_slots_round_trip_and_a_torn_slot_is_skipped(tmp_path: Path) -> None:
    written = exemplars.ExemplarFile(tmp_path)
    trace = {"trace_id": "a" * 32, "span_id": "b" * 16}
    for n in range(100):  # past the first 64 slots: the file grows
        key = exemplars.bucket_key(LATENCY, {"view": f"v{n}", "method": "GET", "le": "0.1"})
        written.record(key, trace, n / 1000, 1000.0 + n)
    found = exemplars.read_file(written.path)
    assert len(found) == 100
    assert found[7] == (
        exemplars.bucket_key(LATENCY, {"view": "v7", "method": "GET", "le": "0.1"}),
        trace,
        0.007,
        1007.0,
    )
    data = bytearray(written.path.read_bytes())
    data[exemplars.SLOT * 3 + 40] ^= 0xFF  # a slot caught half-written
    written.path.write_bytes(bytes(data))
    assert len(exemplars.read_file(written.path)) == 99


def test_without_opentelemetry_nothing_changes_and_nothing_is_imported(tmp_path: Path) -> None:
    script = """
import sys
import django
from django.core.management import call_command
from django.test import Client
django.setup()
call_command("migrate", verbosity=0)
client = Client()
# a view the app counts: the latency histogram observes it (the probes' views are uncounted)
assert client.get("/api/materials/").status_code == 200
response = client.get("/metrics", HTTP_ACCEPT="application/openmetrics-text;version=1.0.0")
assert response.status_code == 200
assert b'view="material-list"' in response.content
print(response["Content-Type"])
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    env = shop_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", ALLOWED_HOSTS="testserver")
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=APP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    content_type, modules = result.stdout.splitlines()[-2:]
    assert content_type == CONTENT_TYPE_LATEST  # the text format, whatever was asked for
    assert modules == "[]"


def traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


@pytest.mark.services
def test_prometheus_stores_and_returns_the_shops_exemplars(
    shop_db: str, redis: RedisService
) -> None:
    env = shop_env(shop_db, redis.url_for(6), OTEL_TRACING="true")
    with gunicorn_server(env, workers=2) as shop:
        sent = set()
        for _ in range(20):
            trace_id, header = traceparent()
            sent.add(trace_id)
            response = requests.get(
                shop.url + "/api/materials/", headers={"traceparent": header}, timeout=10
            )
            assert response.status_code == 200
        # The exposition: OpenMetrics when asked for, exemplars on the latency buckets.
        scraped = requests.get(shop.url + "/metrics", headers={"Accept": OPENMETRICS}, timeout=10)
        assert scraped.headers["Content-Type"].startswith("application/openmetrics-text")
        found = {
            sample.exemplar.labels["trace_id"]
            for family in text_string_to_metric_families(scraped.text)
            if family.name == LATENCY
            for sample in family.samples
            if sample.exemplar and sample.labels.get("view") == "material-list"
        }
        assert found and found <= sent, (found, sent)
        # Kept in the workers' exemplar files: prometheus_client alone drops exemplars in
        # multiprocess mode.
        assert list(shop.multiproc_dir.glob("exemplars_*.bin"))

        with prometheus_3(shop.url) as prometheus:
            returned = wait_for_exemplars(prometheus, sent)
    assert returned and returned <= sent


def wait_for_exemplars(prometheus: str, sent: set[str], timeout: float = 60) -> set[str]:
    """The trace ids /api/v1/query_exemplars returns for the shop's latency buckets."""
    query = urllib.parse.urlencode(
        {
            "query": f'{LATENCY}_bucket{{view="material-list"}}',
            "start": str(time.time() - 600),
            "end": str(time.time() + 600),
        }
    )
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{prometheus}/api/v1/query_exemplars?{query}") as resp:
            payload = json.loads(resp.read())
        assert payload["status"] == "success", payload
        returned = {
            exemplar["labels"]["trace_id"]
            for series in payload["data"]
            for exemplar in series["exemplars"]
        }
        if returned or time.monotonic() > deadline:
            return returned
        time.sleep(0.5)


@contextlib.contextmanager
def prometheus_3(target: str) -> Iterator[str]:
    """Prometheus 3 from the tool cache with exemplar storage on, scraping ``target`` every
    second; yields its URL."""
    with tempfile.TemporaryDirectory(prefix="prometheus-exemplars-") as tmp:
        workdir = Path(tmp)
        job = {
            "job_name": "shop",
            "static_configs": [{"targets": [urllib.parse.urlsplit(target).netloc]}],
        }
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [job],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        process = Process(
            name="prometheus",
            argv_for_port=lambda port: [
                str(cache_dir() / "bin" / "prometheus"),
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ],
            ready_path="/-/ready",
            workdir=workdir,
            startup_timeout=60,
        )
        try:
            process.start()
            yield f"http://{LOOPBACK}:{process.port}"
        finally:
            process.stop()
