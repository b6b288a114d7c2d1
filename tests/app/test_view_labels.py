"""The ``view`` label is bounded per process (issue 21.3): 10,000 distinct views driven through
the shop's middleware make at most ``PROMETHEUS_MAX_VIEWS`` view label values plus
``<other view>``, and ``manage.py check`` says so (W016)."""

from __future__ import annotations

from types import ModuleType

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import override_settings
from django.urls import include, path
from jewelry_monitoring_django import checks
from jewelry_monitoring_django.middleware import OTHER_VIEW
from prometheus_client import REGISTRY

pytestmark = pytest.mark.usefixtures("django_setup")

LATENCY = "django_http_requests_latency_seconds_by_view_method"
BY_VIEW = "django_http_requests_total_by_view_transport_method_total"
LIMIT = 100


def page(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


# 10,000 views, each with its own URL name (as a URLconf generated per tenant would have),
# in 100 includes of 100 so that resolving one path tries 200 patterns, not 10,000.
MANY_VIEWS = ModuleType("many_views")
MANY_VIEWS.urlpatterns = [  # type: ignore[attr-defined]
    path(
        f"t{tenant}/",
        include([path(f"p{n}/", page, name=f"t{tenant}-p{n}") for n in range(100)]),
    )
    for tenant in range(100)
]


def view_values() -> set[str]:
    return {
        sample.labels["view"]
        for family in REGISTRY.collect()
        if family.name == LATENCY
        for sample in family.samples
    }


def test_a_urlconf_with_more_views_than_the_limit_is_reported() -> None:
    # First in this module: the next test leaves requests under <other view> in the registry.
    assert checks.view_labels() == []  # the shop: 16 views
    with override_settings(PROMETHEUS_MAX_VIEWS=5):
        [warning] = checks.view_labels()
    assert warning.id == "jewelry_monitoring_django.W016"
    assert "the URLconf routes 16 distinct views" in warning.msg


def test_ten_thousand_distinct_views_make_a_bounded_number_of_series(client) -> None:  # type: ignore[no-untyped-def]
    other_before = REGISTRY.get_sample_value(
        BY_VIEW, {"view": OTHER_VIEW, "transport": "http", "method": "GET"}
    )
    with override_settings(ROOT_URLCONF=MANY_VIEWS, PROMETHEUS_MAX_VIEWS=LIMIT):
        for tenant in range(100):
            for n in range(100):
                assert client.get(f"/t{tenant}/p{n}/").status_code == 200
        [warning] = checks.view_labels()
    views = view_values()
    assert len(views) <= LIMIT + 1, len(views)
    assert OTHER_VIEW in views
    other = REGISTRY.get_sample_value(
        BY_VIEW, {"view": OTHER_VIEW, "transport": "http", "method": "GET"}
    )
    assert other - (other_before or 0) >= 10_000 - LIMIT
    series = sum(
        1 for family in REGISTRY.collect() if family.name == LATENCY for _ in family.samples
    )
    # the latency histogram: 17 buckets + sum + count per view and method
    assert series <= (LIMIT + 1) * 19 * 3, series
    assert warning.id == "jewelry_monitoring_django.W016"
    assert "requests were counted under view='<other view>'" in warning.msg
    assert "the URLconf routes" not in warning.msg
