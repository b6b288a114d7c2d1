"""AppConfig replacing ``django_prometheus`` in INSTALLED_APPS."""

from __future__ import annotations

from django_prometheus.apps import DjangoPrometheusConfig
from django_prometheus.exports import SetupPrometheusExportsFromConfig


class PrometheusConfig(DjangoPrometheusConfig):
    """django-prometheus without its start-time migration query.

    Upstream ``ready()`` (with ``PROMETHEUS_EXPORT_MIGRATIONS = True``) queries the
    database in every process at start: it crashes the worker if the database is not
    reachable yet, triggers Django's "database access during app initialization" warning,
    and freezes the value until restart (with a ``pid`` label per worker in multiprocess
    mode). We honour ``PROMETHEUS_EXPORT_MIGRATIONS`` at scrape time instead -- same
    metric names and labels -- see :mod:`jewelry_shop.monitoring.migrations`.
    """

    name = "django_prometheus"
    label = "django_prometheus"

    def ready(self) -> None:
        SetupPrometheusExportsFromConfig()
