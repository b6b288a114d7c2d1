"""The integration's AppConfig, and a drop-in AppConfig for ``django_prometheus``."""

from __future__ import annotations

from django.apps import AppConfig
from django_prometheus.apps import DjangoPrometheusConfig as _UpstreamConfig
from django_prometheus.exports import SetupPrometheusExportsFromConfig


class JewelryMonitoringDjangoConfig(AppConfig):
    """``"jewelry_monitoring_django"`` in INSTALLED_APPS: registers the system checks and
    starts the cache counters of our cache backends at 0 (see ``cache.start_counters``)."""

    default = True
    name = "jewelry_monitoring_django"
    verbose_name = "Protected Prometheus metrics"

    def ready(self) -> None:
        from django.conf import settings

        from jewelry_monitoring_django import checks

        checks.register_all()
        caches = getattr(settings, "CACHES", {})
        # Importing .cache imports django-prometheus's backends: only when one of ours is named.
        if any(
            str(c.get("BACKEND", "")).startswith(f"{self.name}.cache.") for c in caches.values()
        ):
            from jewelry_monitoring_django import cache

            cache.start_counters(caches)


class DjangoPrometheusConfig(_UpstreamConfig):
    """``"jewelry_monitoring_django.apps.DjangoPrometheusConfig"`` in INSTALLED_APPS, in
    place of ``"django_prometheus"``: django-prometheus without its start-time migration
    query.

    Upstream ``ready()`` (with ``PROMETHEUS_EXPORT_MIGRATIONS = True``) queries the
    database in every process at start: it crashes the worker if the database is not
    reachable yet, triggers Django's "database access during app initialization" warning,
    and freezes the value until restart (with a ``pid`` label per worker in multiprocess
    mode). The ``/metrics`` view honours ``PROMETHEUS_EXPORT_MIGRATIONS`` at scrape time
    instead -- same metric names and labels -- see :mod:`.migration_gauges`.
    """

    name = "django_prometheus"
    label = "django_prometheus"
    default = False

    def ready(self) -> None:
        SetupPrometheusExportsFromConfig()
