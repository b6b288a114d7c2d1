"""Scrape-time migration gauges.

django-prometheus sets ``django_migrations_applied_total`` and
``django_migrations_unapplied_total`` (label ``connection``) once, in ``AppConfig.ready()``.
Two problems in production:

1. A pod that starts before the migrate job reports ``unapplied > 0`` until it restarts,
   even after the job has run (the alert would never resolve).
2. In prometheus_client multiprocess mode these gauges use ``multiprocess_mode="all"``, so
   every gunicorn worker -- including long-dead ones, whose files ``mark_process_dead``
   does not remove for that mode -- adds a series with a ``pid`` label.

The ``/metrics`` view (:mod:`.views`) therefore drops django-prometheus's copies and emits
the two gauges from :class:`MigrationsCollector`, recomputed at scrape time (cached for
``PROMETHEUS_MIGRATIONS_REFRESH_SECONDS``), one series per connection and no ``pid``
label. Same names, same label, so rules written as
``max by (connection) (django_migrations_unapplied_total) > 0`` work either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError, connections
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

APPLIED = "django_migrations_applied_total"
UNAPPLIED = "django_migrations_unapplied_total"
NAMES = frozenset({APPLIED, UNAPPLIED})


def count_migrations(alias: str) -> tuple[int, int]:
    """Return ``(applied, unapplied)`` for database ``alias`` (queries the database)."""
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connections[alias])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return len(executor.loader.applied_migrations), len(plan)


class MigrationsCollector:
    """Collector yielding the two migration gauges, refreshed at most every ``ttl`` s.

    If the database cannot be queried the last known values are reported (or nothing, if
    there never were any) -- the scrape itself never fails because of it.
    """

    def __init__(self, ttl: float | None = None) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._stamp = float("-inf")
        self._values: dict[str, tuple[int, int]] = {}

    @property
    def ttl(self) -> float:
        if self._ttl is not None:
            return self._ttl
        return float(getattr(settings, "PROMETHEUS_MIGRATIONS_REFRESH_SECONDS", 30))

    def refresh(self) -> None:
        values = dict(self._values)
        for alias in connections.databases:
            try:
                values[alias] = count_migrations(alias)
            except DatabaseError as exc:
                logger.warning("cannot count migrations on %r: %s", alias, exc)
            finally:
                # Never keep a broken connection around for the request thread.
                connections[alias].close_if_unusable_or_obsolete()
        self._values = values
        self._stamp = time.monotonic()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            if time.monotonic() - self._stamp >= self.ttl:
                self.refresh()
            values = dict(self._values)
        applied = GaugeMetricFamily(
            APPLIED, "Count of applied migrations by database connection", labels=["connection"]
        )
        unapplied = GaugeMetricFamily(
            UNAPPLIED,
            "Count of unapplied migrations by database connection",
            labels=["connection"],
        )
        for alias, (n_applied, n_unapplied) in sorted(values.items()):
            applied.add_metric([alias], n_applied)
            unapplied.add_metric([alias], n_unapplied)
        if values:
            yield applied
            yield unapplied


collector = MigrationsCollector()
