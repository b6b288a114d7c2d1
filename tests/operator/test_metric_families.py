"""The metric families doctor names (jewelry_monitoring.cardinality), and its verdict on an
app near its sampleLimit. Pure: Prometheus's answers are written out."""

from __future__ import annotations

from typing import Any

from jewelry_monitoring import cardinality
from jewelry_monitoring.doctor import Doctor


def row(name: str, value: float, **labels: str) -> dict[str, Any]:
    return {"metric": {"__name__": name, **labels} if name else labels, "value": [0, str(value)]}


LATENCY = "django_http_requests_latency_seconds_by_view_method"
ANSWER = [
    row(f"{LATENCY}_bucket", 540),
    row(f"{LATENCY}_count", 30),
    row(f"{LATENCY}_sum", 30),
    row("django_http_requests_total_by_method_total", 4),
    row("jewelry_shop_test_series", 700),
    # Not a histogram: no _bucket or _count beside it.
    row("orders_sum", 2),
]


def test_a_histogram_is_one_family_and_the_biggest_come_first() -> None:
    found = cardinality.families(ANSWER)
    assert found == [
        ("jewelry_shop_test_series", 700),
        (LATENCY, 600),
        ("django_http_requests_total_by_method_total", 4),
        ("orders_sum", 2),
    ]
    assert cardinality.summary(found, top=2) == (
        f"1,306 series in 4 families; biggest: jewelry_shop_test_series (700), {LATENCY} (600)"
    )
    assert cardinality.families_query('namespace="a",job="b"') == (
        'count by (__name__) ({namespace="a",job="b"})'
    )


class Answers:
    """Prometheus's instant queries, answered from a table."""

    def __init__(self, biggest_scrape: float) -> None:
        self.biggest_scrape = biggest_scrape

    def query(self, expr: str) -> list[dict[str, Any]]:
        if expr.startswith("count by (__name__)"):
            return ANSWER
        assert expr.startswith("max(scrape_samples_post_metric_relabeling{"), expr
        return [row("", self.biggest_scrape)]


def test_doctor_fails_an_app_whose_biggest_scrape_nears_its_sample_limit() -> None:
    cr = {
        "metadata": {"name": "shop", "namespace": "jewelry"},
        "spec": {"app": {"scrapeLimits": {"sampleLimit": 1000}}},
    }
    doctor = Doctor(kube=None, namespace="jewelry")  # type: ignore[arg-type]
    fine = doctor._families(cr, Answers(700))  # type: ignore[arg-type]
    assert (fine.status, fine.detail.endswith("(sampleLimit 1,000)")) == ("ok", True)
    near = doctor._families(cr, Answers(900))  # type: ignore[arg-type]
    assert near.status == "fail"
    assert near.detail.endswith("the biggest scrape 900 samples, 90% of its sampleLimit 1,000")
    assert "runbook TargetNearSampleLimit" in near.fix


def test_only_what_the_app_exposes_counts_not_what_prometheus_adds_to_its_job() -> None:
    """The job's series also hold our recording rules' outputs (they keep ``job``), the alert
    series and the series Prometheus writes for each scrape: none is a family the app
    exposes, and none is in its sampleLimit. The healthy shop's doctor once named
    job:django_http_request_latency_seconds_bucket:rate5m among the app's biggest."""
    added = [
        row("job:django_http_request_latency_seconds_bucket:rate5m", 900),
        row("ALERTS", 5),
        row("ALERTS_FOR_STATE", 5),
        row("up", 1),
        row("scrape_duration_seconds", 1),
        row("scrape_samples_scraped", 1),
        row("scrape_samples_post_metric_relabeling", 1),
        row("scrape_series_added", 1),
    ]
    assert cardinality.families(ANSWER + added) == cardinality.families(ANSWER)
