"""The cache hit ratio of a burst of traffic that falls between two scrapes.

What the demo does: a fresh shop, scraped while idle, then a load generator run shorter than
the scrape interval, then the recording rules. A counter Prometheus first sees after the
burst has no earlier sample, so the burst's increments are not in any rate(): the cache hit
ratio was empty ("n/a (no cache reads counted)" in every CI run, where the machine is fast
enough for the burst to fit), while the request rate, whose counters the probes had
created, was right. The cache counters must exist, at 0, before the first cache read.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from devkit import prometheus as prom
from devkit.services import redis_service
from devkit.shopapp import gunicorn_server, manage, shop_env
from jewelry_monitoring.builders.common import Owner, child_name
from jewelry_monitoring.builders.desired import desired_objects
from jewelry_monitoring.builders.rules import CACHE_HIT_RATIO
from jewelry_monitoring.spec import JewelryMonitoringSpec

pytestmark = pytest.mark.services

NAMESPACE, NAME = "shop", "jewelry"
JOB = child_name(NAME, "app-metrics")
# Long enough that the burst below (a few dozen requests) fits between two scrapes.
INTERVAL = 30
SPEC: dict[str, Any] = {
    "app": {"podSelector": {"app": "shop"}, "interval": f"{INTERVAL}s", "scrapeTimeout": "10s"}
}


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def test_a_burst_between_two_scrapes_counts_its_cache_reads(tmp_path: Path) -> None:
    owner = Owner(NAME, NAMESPACE, "uid-cache", JewelryMonitoringSpec.model_validate(SPEC))
    objects = desired_objects(owner, frozenset({"ServiceMonitor", "PrometheusRule"}))
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_service())
        env = shop_env(f"sqlite:///{tmp_path / 'shop.sqlite3'}", redis.url_for(1))
        manage("migrate", "--noinput", env=env)
        manage("seed_demo", "--products", "5", "--customers", "1", env=env)
        shop = stack.enter_context(gunicorn_server(env, workers=2))
        config = prom.prometheus_config(objects, {JOB: [f"{shop.host}:{shop.port}"]}, [])
        prometheus = stack.enter_context(prom.prometheus_server(config, prom.rule_file(objects)))
        api = prometheus.api
        api.wait_for(f'up{{job="{JOB}"}} == 1', timeout=INTERVAL + 30, what="a first scrape")
        first = api.value(f'timestamp(up{{job="{JOB}"}})')
        assert first is not None
        # The burst: every product read twice through the cache (a miss, then a hit).
        started = time.time()
        products = _get(f"{shop.url}/api/products/")["results"]
        assert products
        for product in products:
            for _ in range(2):
                _get(f"{shop.url}/api/products/{product['id']}/")
        took = time.time() - started
        assert started + took < first + INTERVAL, (
            f"the burst took {took:.1f}s and no longer fits between two scrapes: the test "
            "would not show what it is about"
        )
        api.wait_for(
            f'{CACHE_HIT_RATIO}{{job="{JOB}"}} and timestamp({CACHE_HIT_RATIO}{{job="{JOB}"}})'
            f" > {first + INTERVAL}",
            timeout=2 * INTERVAL + 30,
            what="the cache hit ratio recorded after the scrape that follows the burst",
        )
        ratio = api.value(f'{CACHE_HIT_RATIO}{{job="{JOB}"}}')
    assert ratio == pytest.approx(0.5)
