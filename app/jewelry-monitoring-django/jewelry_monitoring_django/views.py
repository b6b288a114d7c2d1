"""The protected ``/metrics`` view, in place of ``django_prometheus.exports.ExportToDjangoView``
(which has no access control): address and credential rules in :mod:`.access`."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import prometheus_client
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from jewelry_monitoring_django import exemplars, migration_gauges
from jewelry_monitoring_django.access import AccessPolicy, Credentials
from jewelry_monitoring_django.collector import FoldingCollector
from jewelry_monitoring_django.middleware import uncounted

logger = logging.getLogger(__name__)


class _Without:
    """Pass through another collector's families except the named ones."""

    def __init__(self, inner: CollectorRegistry, names: frozenset[str]) -> None:
        self._inner = inner
        self._names = names

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():
            if family.name not in self._names:
                yield family


def multiprocess_dir() -> str | None:
    # prometheus_client itself maps the deprecated lower-case name onto this one.
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def build_registry(migrations: bool = True) -> CollectorRegistry:
    """Registry for one scrape: all workers' files (multiprocess) or this process's metrics,
    with django-prometheus's start-time migration gauges swapped for scrape-time ones (none
    without ``migrations``: they query the database)."""
    registry = CollectorRegistry(auto_describe=False)
    directory = multiprocess_dir()
    if directory:
        inner = CollectorRegistry(auto_describe=False)
        inner.register(FoldingCollector(directory))
        registry.register(_Without(inner, migration_gauges.NAMES))
    else:
        registry.register(_Without(prometheus_client.REGISTRY, migration_gauges.NAMES))
    if migrations and getattr(settings, "PROMETHEUS_EXPORT_MIGRATIONS", False):
        registry.register(migration_gauges.collector)
    return registry


@uncounted  # a scrape is not app traffic
def metrics_view(request: HttpRequest) -> HttpResponse:
    policy = AccessPolicy.from_settings(settings)
    if not policy.ip_allowed(request.META):
        return HttpResponse("Forbidden\n", status=403, content_type="text/plain")
    try:
        creds = Credentials.from_settings(settings)
    except OSError as exc:  # a *_FILE secret that cannot be read: fail closed, loudly
        logger.error("cannot read /metrics credentials: %s", exc)
        return HttpResponse("Unavailable\n", status=503, content_type="text/plain")
    if not creds.check(request.headers.get("Authorization")):
        response = HttpResponse("Unauthorized\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = creds.challenge()
        return response
    registry = build_registry()
    if exemplars.tracing():  # exemplars exist in the OpenMetrics format only
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        response = HttpResponse(encoder(registry), content_type=content_type)
    else:
        body = prometheus_client.generate_latest(registry)
        response = HttpResponse(body, content_type=prometheus_client.CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
