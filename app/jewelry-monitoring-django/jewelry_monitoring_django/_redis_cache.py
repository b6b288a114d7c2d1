"""The Redis backends of :mod:`jewelry_monitoring_django.cache` (named there): apart,
because django-prometheus's module for them imports django-redis."""

from __future__ import annotations

from django_prometheus.cache.backends import redis

from jewelry_monitoring_django.cache import SetDeleteCounting


class RedisCache(SetDeleteCounting, redis.RedisCache):
    """django-redis's backend (``django_redis.cache.RedisCache``)."""

    metrics_backend_label = "redis"


class NativeRedisCache(SetDeleteCounting, redis.NativeRedisCache):
    """Django's own Redis backend (``django.core.cache.backends.redis.RedisCache``)."""

    metrics_backend_label = "native_redis"
