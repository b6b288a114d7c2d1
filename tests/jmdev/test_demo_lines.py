"""What the demo in pods prints and applies, without a node: its example resource is complete
(every condition knowable) and valid, and its figures say over which window they are."""

from __future__ import annotations

from devkit.demo import (
    ALERT_RECEIVER,
    EXAMPLE,
    chart_values,
    complete_example,
    figures_line,
    traffic_line,
)
from devkit.kubetools import load_yaml_documents
from devkit.prometheus_operator import kube_prometheus_stack_prometheus
from jewelry_monitoring.builders.rules import KNOWN_ALERTS
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
