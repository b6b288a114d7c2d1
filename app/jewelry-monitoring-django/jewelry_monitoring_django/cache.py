"""Cache backends that count writes as well as django-prometheus's reads.

django-prometheus's backends count reads only (``django_cache_get_total``,
``django_cache_get_hits_total``, ``django_cache_get_misses_total``,
``django_cache_get_fail_total``). The jewelry-monitoring cache dashboard also shows writes,
so these subclasses of them add

* ``django_cache_set_total{backend}``: one per key written by ``set()`` or ``set_many()``,
* ``django_cache_delete_total{backend}``: one per key named to ``delete()`` or
  ``delete_many()``,

with the ``backend`` label values django-prometheus gives the same backend (``locmem``,
``filebased``, ``memcached``, ``native_redis``, ``redis``). Opt in per cache:
``CACHES["default"]["BACKEND"] = "jewelry_monitoring_django.cache.LocMemCache"`` (and so on);
``manage.py check`` names the one to use (W005, W011). A backend of your own gets the
counters by putting :class:`SetDeleteCounting` first among its bases and naming its
``metrics_backend_label``.

``RedisCache`` (django-redis) and ``NativeRedisCache`` (Django's own Redis backend) are
imported only when named, so that django-redis stays optional: django-prometheus's module for
both imports ``django_redis``, so either needs it installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.core.cache.backends.base import BaseCache
from django.utils.module_loading import import_string
from django_prometheus.cache import metrics as read_counters
from django_prometheus.cache.backends import filebased, locmem, memcached
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


class SetDeleteCounting:
    """Counts the keys written and deleted, then lets the backend do it.

    Where a backend's ``set_many``/``delete_many`` is Django's default (a loop over
    ``set``/``delete``), its keys are counted one by one there; any other is counted in
    ``set_many``/``delete_many``: every key once, whatever the backend.
    """

    # The ``backend`` label; a subclass names its backend as django-prometheus does.
    metrics_backend_label = ""

    def _loops(self, method: str) -> bool:
        """Whether the backend's own ``method`` is Django's default loop over single keys."""
        own = getattr(super(), method)
        return getattr(own, "__func__", None) is getattr(BaseCache, method)

    def set(self, *args: Any, **kwargs: Any) -> Any:
        django_cache_set_total.labels(backend=self.metrics_backend_label).inc()
        return super().set(*args, **kwargs)  # type: ignore[misc]

    def set_many(self, data: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
        if not self._loops("set_many"):
            django_cache_set_total.labels(backend=self.metrics_backend_label).inc(len(data))
        return super().set_many(data, *args, **kwargs)  # type: ignore[misc]

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        django_cache_delete_total.labels(backend=self.metrics_backend_label).inc()
        return super().delete(*args, **kwargs)  # type: ignore[misc]

    def delete_many(self, keys: Iterable[str], *args: Any, **kwargs: Any) -> Any:
        keys = list(keys)
        if not self._loops("delete_many"):
            django_cache_delete_total.labels(backend=self.metrics_backend_label).inc(len(keys))
        return super().delete_many(keys, *args, **kwargs)  # type: ignore[misc]


class LocMemCache(SetDeleteCounting, locmem.LocMemCache):
    metrics_backend_label = "locmem"


class FileBasedCache(SetDeleteCounting, filebased.FileBasedCache):
    metrics_backend_label = "filebased"


class PyMemcacheCache(SetDeleteCounting, memcached.PyMemcacheCache):
    metrics_backend_label = "memcached"


class PyLibMCCache(SetDeleteCounting, memcached.PyLibMCCache):
    metrics_backend_label = "memcached"


# In _redis_cache: importing them imports django_redis.
REDIS_BACKENDS = ("RedisCache", "NativeRedisCache")


def start_counters(caches: Mapping[str, Mapping[str, Any]]) -> None:
    """Every read and write counter of each configured cache of ours, at 0, from the start.

    A counter series appears on its first increment, and Prometheus has no sample of it
    before that: the reads counted before the first scrape that sees the series are in no
    rate(). Traffic that starts and ends between two scrapes (a deploy's first burst, the
    demo's load generator) then shows no cache reads at all while the request rate, whose
    series the probes created long before, is right.
    """
    counters = (
        read_counters.django_cache_get_total,
        read_counters.django_cache_hits_total,
        read_counters.django_cache_misses_total,
        read_counters.django_cache_get_fail_total,
        django_cache_set_total,
        django_cache_delete_total,
    )
    for settings in caches.values():
        path = str(settings.get("BACKEND", ""))
        if not path.startswith(f"{__name__}."):
            continue
        backend = import_string(path)
        if issubclass(backend, SetDeleteCounting):
            for counter in counters:
                counter.labels(backend=backend.metrics_backend_label)


def __getattr__(name: str) -> Any:
    """The Redis backends, imported on first use."""
    if name not in REDIS_BACKENDS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from jewelry_monitoring_django import _redis_cache

    return getattr(_redis_cache, name)
