"""AppConfig replacing ``django_prometheus`` in INSTALLED_APPS."""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django_prometheus.apps import DjangoPrometheusConfig

logger = logging.getLogger(__name__)


class PrometheusConfig(DjangoPrometheusConfig):
    """django-prometheus, minus a crash when the database is down at process start.

    Upstream ``ready()`` computes the migration gauges with a live query; if the database
    is unreachable (pod starting before PostgreSQL, network blip) that raises and the
    worker never boots. We log instead: ``/metrics`` recomputes the migration counts at
    scrape time anyway (see :mod:`jewelry_shop.monitoring.migrations`).
    """

    name = "django_prometheus"
    label = "django_prometheus"

    def ready(self) -> None:
        try:
            super().ready()
        except DatabaseError as exc:
            logger.warning("migration metrics not computed at start: %s", exc)
