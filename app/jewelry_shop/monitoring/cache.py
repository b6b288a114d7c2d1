"""Cache backends adding set/delete counters to django-prometheus's get/hit/miss ones.

django-prometheus only counts reads (``django_cache_get_total``,
``django_cache_get_hits_total``, ``django_cache_get_misses_total``,
``django_cache_get_fail_total``, label ``backend``). These subclasses add

* ``django_cache_set_total{backend}`` -- one per ``set()`` call (``set_many`` counts each key),
* ``django_cache_delete_total{backend}`` -- one per ``delete()`` call
  (``delete_many`` counts each key),

with the same ``backend`` label values as upstream (``redis``, ``locmem``).

Note: importing ``django_prometheus.cache.backends.redis`` imports ``django_redis`` even
if you only want Django's native Redis backend -- django-redis must be installed.
"""

from __future__ import annotations

from typing import Any

from django_prometheus.cache.backends import locmem as prom_locmem
from django_prometheus.cache.backends import redis as prom_redis
from django_prometheus.conf import NAMESPACE
from prometheus_client import Counter

django_cache_set_total = Counter(
    "django_cache_set_total",
    "Total set requests on cache",
    ["backend"],
    namespace=NAMESPACE,
)
django_cache_delete_total = Counter(
    "django_cache_delete_total",
    "Total delete requests on cache",
    ["backend"],
    namespace=NAMESPACE,
)


class _SetDeleteCounting:
    metrics_backend_label = ""

    def set(self, *args: Any, **kwargs: Any) -> Any:
        django_cache_set_total.labels(backend=self.metrics_backend_label).inc()
        return super().set(*args, **kwargs)  # type: ignore[misc]

    def set_many(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        django_cache_set_total.labels(backend=self.metrics_backend_label).inc(len(data))
        return super().set_many(data, *args, **kwargs)  # type: ignore[misc]

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        django_cache_delete_total.labels(backend=self.metrics_backend_label).inc()
        return super().delete(*args, **kwargs)  # type: ignore[misc]

    def delete_many(self, keys: Any, *args: Any, **kwargs: Any) -> Any:
        keys = list(keys)
        django_cache_delete_total.labels(backend=self.metrics_backend_label).inc(len(keys))
        return super().delete_many(keys, *args, **kwargs)  # type: ignore[misc]


class RedisCache(_SetDeleteCounting, prom_redis.RedisCache):
    """django-redis backend with get/hit/miss/fail (upstream) and set/delete counters."""

    metrics_backend_label = "redis"


class LocMemCache(_SetDeleteCounting, prom_locmem.LocMemCache):
    """Local-memory backend with get/hit/miss (upstream) and set/delete counters."""

    metrics_backend_label = "locmem"

    def set_many(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        # Django's base set_many() loops over self.set(), which already counts.
        return super(_SetDeleteCounting, self).set_many(data, *args, **kwargs)

    def delete_many(self, keys: Any, *args: Any, **kwargs: Any) -> Any:
        # Django's base delete_many() loops over self.delete(), which already counts.
        return super(_SetDeleteCounting, self).delete_many(keys, *args, **kwargs)
