"""jewelry_monitoring_django.cache: django-prometheus's cache backends that also count
writes, each key written or deleted counted once whatever the backend does underneath.
tests/django_integration shows the counters on a new user's /metrics; tests/app's
test_metric_families on the shop's (django-redis, real Redis)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from django.utils.module_loading import import_string
from django_prometheus.cache.backends import locmem
from django_prometheus.cache.backends import redis as upstream_redis
from jewelry_monitoring_django import cache
from prometheus_client import REGISTRY

pytestmark = pytest.mark.usefixtures("django_setup")

NAMES = ("django_cache_set_total", "django_cache_delete_total", "django_cache_get_total")


def counts(backend: str) -> dict[str, float]:
    return {name: REGISTRY.get_sample_value(name, {"backend": backend}) or 0.0 for name in NAMES}


def exercise(backend: Any) -> None:
    """4 keys written, 5 deleted (one of them never written), 2 read."""
    backend.set("a", 1)
    backend.set_many({"b": 2, "c": 3, "d": 4})
    assert backend.get("b") == 2
    backend.delete("a")
    backend.delete_many(iter(["b", "c", "d", "never-written"]))
    assert backend.get("c") is None


@pytest.mark.parametrize(
    ("name", "label"), [("LocMemCache", "locmem"), ("FileBasedCache", "filebased")]
)
def test_each_key_written_or_deleted_counts_once(tmp_path: Path, name: str, label: str) -> None:
    """These backends' set_many/delete_many are Django's loops over set/delete."""
    backend = import_string(f"jewelry_monitoring_django.cache.{name}")(str(tmp_path), {})
    before = counts(label)
    exercise(backend)
    after = counts(label)
    assert {n: after[n] - before[n] for n in NAMES} == {
        "django_cache_set_total": 4,
        "django_cache_delete_total": 5,
        "django_cache_get_total": 2,  # django-prometheus's, still counted
    }


class _BulkWrites(locmem.LocMemCache):
    """A backend whose set_many/delete_many do not go through its set/delete (as
    memcached's and Redis's send one command for all keys)."""

    def set_many(self, data: Mapping[str, Any], *args: Any, **kwargs: Any) -> list[str]:
        for key, value in data.items():
            locmem.LocMemCache.set(self, key, value)
        return []

    def delete_many(self, keys: Iterable[str], *args: Any, **kwargs: Any) -> None:
        for key in keys:
            locmem.LocMemCache.delete(self, key)


class _CountedBulkWrites(cache.SetDeleteCounting, _BulkWrites):
    metrics_backend_label = "bulk"


def test_a_backend_with_its_own_set_many_counts_each_key_once() -> None:
    before = counts("bulk")
    exercise(_CountedBulkWrites("bulk", {}))
    after = counts("bulk")
    assert after["django_cache_set_total"] - before["django_cache_set_total"] == 4
    assert after["django_cache_delete_total"] - before["django_cache_delete_total"] == 5
    assert _CountedBulkWrites("bulk", {}).get("c") is None  # deleted indeed


def test_the_redis_backends_wrap_django_prometheus_and_keep_its_labels() -> None:
    """Named on first use (their upstream module imports django-redis, installed here)."""
    assert issubclass(cache.RedisCache, upstream_redis.RedisCache)
    assert issubclass(cache.NativeRedisCache, upstream_redis.NativeRedisCache)
    assert (
        cache.RedisCache.metrics_backend_label,
        cache.NativeRedisCache.metrics_backend_label,
    ) == ("redis", "native_redis")
    assert import_string("jewelry_monitoring_django.cache.RedisCache") is cache.RedisCache
    with pytest.raises(AttributeError):
        cache.NoSuchCache  # noqa: B018


def test_our_caches_counters_start_at_zero_before_any_read() -> None:
    """A counter Prometheus first sees after a burst of reads has no earlier sample, and the
    burst is in no rate(): the series must exist, at 0, before the first read."""
    # A backend no other test reads through (its client library is not even needed).
    backend = "jewelry_monitoring_django.cache.PyLibMCCache"
    label = "memcached"
    names = ("django_cache_get_hits_total", "django_cache_get_misses_total", *NAMES)
    assert all(REGISTRY.get_sample_value(n, {"backend": label}) is None for n in names)
    cache.start_counters({"default": {"BACKEND": backend}, "other": {"BACKEND": "x.Y"}})
    assert {n: REGISTRY.get_sample_value(n, {"backend": label}) for n in names} == {
        n: 0.0 for n in names
    }
