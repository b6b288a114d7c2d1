"""django-prometheus's model counters see instance save()/delete() only.

Bulk operations (bulk_create, QuerySet.update, QuerySet.delete) and cascades bypass the
ExportModelOperationsMixin and are NOT counted. This test pins that behaviour so alert
rules and dashboards do not read more into django_model_*_total than it measures.
"""

from __future__ import annotations

import uuid

from prometheus_client import REGISTRY


def _v(name: str, model: str) -> float:
    return REGISTRY.get_sample_value(name, {"model": model}) or 0.0


def _snapshot() -> tuple[float, float, float]:
    return (
        _v("django_model_inserts_total", "material"),
        _v("django_model_updates_total", "material"),
        _v("django_model_deletes_total", "material"),
    )


def test_bulk_operations_are_not_counted(django_setup: None) -> None:
    from jewelry_shop.catalog.models import Material

    tag = uuid.uuid4().hex[:6]
    start = _snapshot()
    Material.objects.bulk_create(
        [Material(name=f"Bulk {tag} {i}", slug=f"bulk-{tag}-{i}") for i in range(3)]
    )
    qs = Material.objects.filter(slug__startswith=f"bulk-{tag}-")
    assert qs.update(purity="999") == 3
    assert qs.delete()[0] == 3
    assert _snapshot() == start  # three inserts, updates, deletes happened; none counted

    m = Material(name=f"Single {tag}", slug=f"single-{tag}")
    m.save()
    m.purity = "750"
    m.save()
    m.delete()
    assert _snapshot() == (start[0] + 1, start[1] + 1, start[2] + 1)
