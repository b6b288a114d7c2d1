"""A Redis outage degrades to cache misses (no 500s) and shows in django_cache_get_fail_total."""

from __future__ import annotations

import pytest
import requests

from devkit.services import redis_service
from devkit.shopapp import gunicorn_server, scrape, shop_env

pytestmark = pytest.mark.services


def test_redis_outage_is_counted_and_survived(shop_db: str) -> None:
    with redis_service() as redis, gunicorn_server(shop_env(shop_db, redis.url), workers=1) as app:
        url = app.url + "/api/products/1/"
        assert requests.get(url, timeout=10).status_code == 200
        assert requests.get(url, timeout=10).status_code == 200
        s = scrape(app.url + "/metrics")
        assert s.value("django_cache_get_hits_total", backend="redis") >= 1
        # at 0 from the start (cache.start_counters), so that the first failures are in rate()
        assert s.has("django_cache_get_fail_total", backend="redis")
        assert s.value("django_cache_get_fail_total", backend="redis") == 0

        redis.command("SHUTDOWN", "NOSAVE")  # the cache goes away under the running app

        for _ in range(3):
            resp = requests.get(url, timeout=10)
            assert resp.status_code == 200  # served from PostgreSQL
            assert resp.json()["id"] == 1
        after = scrape(app.url + "/metrics")
        assert after.value("django_cache_get_fail_total", backend="redis") == 3
