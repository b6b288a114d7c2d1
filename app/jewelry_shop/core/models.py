"""Shared model helpers."""

from __future__ import annotations

from django.conf import settings


class _NotMonitored:
    """Stand-in mixin when PROMETHEUS_ENABLED is off (keeps the MRO valid)."""


def monitored(model_name: str) -> type:
    """``ExportModelOperationsMixin(model_name)`` or a no-op mixin when metrics are off.

    The mixin counts *instance* ``save()`` (``django_model_inserts_total`` /
    ``django_model_updates_total``) and ``delete()`` (``django_model_deletes_total``).
    ``bulk_create``, ``QuerySet.update()`` and ``QuerySet.delete()`` bypass it and are
    **not** counted -- see app/README.md and tests/app/test_metric_families.py.
    """
    if not getattr(settings, "PROMETHEUS_ENABLED", True):
        return _NotMonitored
    from django_prometheus.models import ExportModelOperationsMixin

    return ExportModelOperationsMixin(model_name)
