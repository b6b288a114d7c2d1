"""A Prometheus scrape of /metrics is not app traffic (issue 17's suspicion, confirmed), nor
is a kubelet probe of the shop's /healthz and /readyz.

Upstream's after-middleware counted every scrape as a request and a 200 response, so an idle
app scraped every 15 s by two Prometheus replicas answered 0.13 "requests" per second: more
than the alerts' default ``minRequestRate`` floor (0.1/s), and a denominator of the
availability SLO made of nothing but successes. The shop's other requests are still counted.
"""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

pytestmark = pytest.mark.usefixtures("django_setup")

# What the operator's rules and dashboards divide by (and the SLO's latency total).
TRAFFIC = (
    ("django_http_responses_total_by_status_total", {"status": "200"}),
    ("django_http_requests_total_by_method_total", {"method": "GET"}),
    ("django_http_requests_total_by_transport_total", {"transport": "http"}),
    (
        "django_http_requests_latency_seconds_by_view_method_count",
        {"view": "prometheus-django-metrics", "method": "GET"},
    ),
    (
        "django_http_requests_total_by_view_transport_method_total",
        {"view": "prometheus-django-metrics", "transport": "http", "method": "GET"},
    ),
    (
        "django_http_responses_total_by_status_view_method_total",
        {"status": "200", "view": "prometheus-django-metrics", "method": "GET"},
    ),
)


def counts() -> dict[str, float]:
    return {name: REGISTRY.get_sample_value(name, labels) or 0.0 for name, labels in TRAFFIC}


def test_scrapes_of_metrics_are_not_counted_as_requests(client) -> None:  # type: ignore[no-untyped-def]
    before = counts()
    for _ in range(5):
        assert client.get("/metrics").status_code == 200
    assert counts() == before


def test_kubelet_probes_are_not_counted_as_requests(client) -> None:  # type: ignore[no-untyped-def]
    """The shop's liveness and readiness views are not app traffic either: the kubelet probing
    them as manifests/dev/app.yaml says (readiness every 10 s, liveness every 20 s) would add
    0.15 requests/s per pod, above the alerts' traffic floor, on an app nobody uses."""
    probes = {"healthz", "readyz"}
    probe_series = [
        (name, {**labels, "view": view})
        for name, labels in TRAFFIC
        if "view" in labels
        for view in probes
    ]

    def observed() -> dict[str, float]:
        found = counts()
        for name, labels in probe_series:
            found[f"{name}{labels}"] = REGISTRY.get_sample_value(name, labels) or 0.0
        return found

    before = observed()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
    assert observed() == before


def test_the_apps_own_requests_are_still_counted_once(client) -> None:  # type: ignore[no-untyped-def]
    name = "django_http_responses_total_by_status_view_method_total"
    labels = {"status": "200", "view": "material-list", "method": "GET"}
    latency = "django_http_requests_latency_seconds_by_view_method_count"
    before = {
        "view": REGISTRY.get_sample_value(name, labels) or 0.0,
        "by_method": REGISTRY.get_sample_value(
            "django_http_requests_total_by_method_total", {"method": "GET"}
        )
        or 0.0,
        "latency": REGISTRY.get_sample_value(latency, {"view": "material-list", "method": "GET"})
        or 0.0,
        "missing": REGISTRY.get_sample_value(
            "django_http_responses_total_by_status_total", {"status": "404"}
        )
        or 0.0,
    }
    for _ in range(3):
        assert client.get("/api/materials/").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    assert REGISTRY.get_sample_value(name, labels) == before["view"] + 3
    assert (
        REGISTRY.get_sample_value("django_http_requests_total_by_method_total", {"method": "GET"})
        == before["by_method"] + 4
    )
    assert (
        REGISTRY.get_sample_value(latency, {"view": "material-list", "method": "GET"})
        == before["latency"] + 3
    )
    assert (
        REGISTRY.get_sample_value("django_http_responses_total_by_status_total", {"status": "404"})
        == before["missing"] + 1
    )


def test_a_decorated_metrics_view_stays_uncounted() -> None:
    import functools

    from jewelry_monitoring_django.middleware import UNCOUNTED
    from jewelry_monitoring_django.views import metrics_view

    @functools.wraps(metrics_view)
    def wrapped(request):  # type: ignore[no-untyped-def]
        return metrics_view(request)

    assert getattr(wrapped, UNCOUNTED) is True


def test_a_counted_view_answering_the_kubelets_probes_is_named_once(
    client,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The kubelet sends ``User-Agent: kube-probe/<major>.<minor>`` with every HTTP probe that
    does not set its own: a probe that reaches a counted view is told apart exactly, and the
    view is named in the log once, with the fix."""
    probe = {"HTTP_USER_AGENT": "kube-probe/1.35"}
    logger = "jewelry_monitoring_django.middleware"
    with caplog.at_level(logging.WARNING, logger=logger):
        for _ in range(2):
            assert client.get("/api/collections/", **probe).status_code == 200
            assert client.get("/healthz", **probe).status_code == 200  # uncounted: silent
            assert client.get("/api/collections/").status_code == 200  # not a probe
    [record] = [r for r in caplog.records if r.name == logger]
    assert "/api/collections/" in record.getMessage()
    assert "'collection-list'" in record.getMessage()
    assert "jewelry_monitoring_django.middleware.uncounted" in record.getMessage()
