"""What the demo in pods prints and applies, without a node: its example resource is complete
(every condition knowable) and valid, and its figures say over which window they are."""

from __future__ import annotations

import math

from devkit.demo import (
    ALERT_RECEIVER,
    EXAMPLE,
    chart_values,
    complete_example,
    figures_after,
    figures_line,
    traffic_line,
)
from devkit.kubetools import load_yaml_documents
from devkit.prometheus_operator import kube_prometheus_stack_prometheus
from jewelry_monitoring.builders.rules import (
    CACHE_HIT_RATIO,
    KNOWN_ALERTS,
    LATENCY_QUANTILES,
    REQUESTS_RATE,
)
from jewelry_monitoring.config import ResourceDefaults
from jewelry_monitoring.spec import JewelryMonitoringSpec, semantic_problems


def test_the_demo_resource_routes_to_the_demos_receiver_and_the_chart_names_the_rest() -> None:
    release = {"release": "kube-prometheus-stack"}
    (example,) = load_yaml_documents(EXAMPLE.read_text())
    example = complete_example(example, "hook-secret")
    # As the operator sees it: the chart's defaults applied (config.resource_defaults).
    values = chart_values(kube_prometheus_stack_prometheus(release), release)
    assert values == {
        "prometheus.ref": "monitoring/kube-prometheus-stack-prometheus",
        "defaults.alertmanagerConfigLabels.release": "kube-prometheus-stack",
    }
    defaults = ResourceDefaults(
        monitor_labels={},
        alertmanager_config_labels=release,
        prometheus_ref=values["prometheus.ref"],
    )
    spec = JewelryMonitoringSpec.model_validate(defaults.apply(example["spec"]))
    assert semantic_problems(spec, KNOWN_ALERTS) == []
    assert spec.prometheus is not None and spec.prometheus.check_interval == "10s"
    assert spec.routing is not None
    assert spec.routing.alertmanager_config_labels == release
    (receiver,) = spec.routing.receivers
    assert receiver.name == spec.routing.receiver == ALERT_RECEIVER
    assert receiver.webhook is not None and receiver.webhook.url.name == "hook-secret"


def test_the_figures_name_their_window_and_the_traffic_its_own_rate() -> None:
    line = figures_line({"requests/s": 0.78, "p95 latency (s)": 0.042, "cache hit ratio": None})
    assert line == (
        "live, over the last 5m (the CR's recording rules): 0.78 requests/s, p95 latency "
        "42 ms, cache hit ratio n/a (no cache reads in the window)"
    )
    stats = {"requests": 300, "elapsed_seconds": 30.0, "by_status": {"200": 300}}
    assert traffic_line(stats) == "  300 requests in 30.0s (10.0/s), by status {'200': 300}"


class _Prometheus:
    """Answers the demo's queries as a Prometheus would: when it last scraped the app's
    request counters, when it last recorded the request rate, and the figures."""

    def __init__(self, scraped: float, recorded: float, figures: dict[str, float | None]):
        self.scraped, self.recorded, self.figures = scraped, recorded, figures

    def value(self, query: str) -> float | None:
        if query.startswith("max(timestamp(django_http_requests_total_by_method_total{"):
            return self.scraped
        if query.startswith(f"min(timestamp({REQUESTS_RATE}{{"):
            return self.recorded
        (answer,) = [v for name, v in self.figures.items() if f"({name}{{" in query]
        return answer


def test_the_figures_wait_for_the_traffic_in_the_rate_not_a_rate_of_0_after_it() -> None:
    figures = {REQUESTS_RATE: 0.9, LATENCY_QUANTILES[0.95]: 0.04, CACHE_HIT_RATIO: None}
    # Scraped at 110 and recorded at 112: the figures of traffic that ended at 100.
    assert figures_after(_Prometheus(110.0, 112.0, figures), "shop", since=100.0) == {
        "requests/s": 0.9,
        "p95 latency (s)": 0.04,
        "cache hit ratio": None,
    }
    # Not yet: no scrape after the traffic, or no evaluation after that scrape.
    assert figures_after(_Prometheus(110.0, 112.0, figures), "shop", since=111.0) is None
    assert figures_after(_Prometheus(110.0, 109.0, figures), "shop", since=100.0) is None
    # The app's counters first scraped with the traffic already in them: a rate of 0 and a
    # NaN p95 are no figures of the traffic.
    for stale in ({REQUESTS_RATE: 0.0}, {LATENCY_QUANTILES[0.95]: math.nan}):
        prometheus = _Prometheus(110.0, 112.0, {**figures, **stale})
        assert figures_after(prometheus, "shop", since=100.0) is None, stale
