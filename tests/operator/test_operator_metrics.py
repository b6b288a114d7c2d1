"""The operator's own metrics, scraped by a real Prometheus through the chart's ServiceMonitor,
with the chart's PrometheusRule loaded.

The scrape job is translated from the chart's ServiceMonitor and metrics Service (as
prometheus-operator would make it, see devkit.prometheus), pointing at the operator process
that runs under the chart's RBAC against the local API server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from devkit import prometheus as prom
from devkit.crs import wait_condition
from devkit.kubetools import wait_for
from devkit.operator_process import OperatorProcess, render_chart

pytestmark = pytest.mark.cluster

RELEASE, RELEASE_NAMESPACE = "jm", "jm-system"
CHART_VALUES = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "interval": "1s"},
        "prometheusRule": {"enabled": True},
    }
}


def test_prometheus_scrapes_the_operator_metrics_and_loads_its_rules(
    operator: OperatorProcess,
    admin_api: client.ApiClient,
    namespace: str,
    create_cr: Callable[..., dict[str, Any]],
) -> None:
    # One CR that reconciles cleanly, one whose exporter the API server refuses (a toleration,
    # passed through unchecked, with an unknown operator): an API error, a failed apply and a
    # scheduled retry.
    good = create_cr({"app": {"podSelector": {"app": "shop"}}})["metadata"]["name"]
    refused = create_cr(
        {
            "app": {"podSelector": {"app": "shop"}},
            "exporters": {
                "redis": {"enabled": True, "tolerations": [{"key": "x", "operator": "Sometimes"}]}
            },
        }
    )["metadata"]["name"]
    wait_condition(admin_api, namespace, good, "Ready", "True")
    wait_condition(admin_api, namespace, refused, "Ready", "False", "ApplyFailed")

    chart = render_chart(RELEASE, RELEASE_NAMESPACE, CHART_VALUES)
    (service,) = [o for o in chart if o["kind"] == "Service"]
    job = service["metadata"]["name"]
    config = prom.prometheus_config(
        chart, {job: [f"127.0.0.1:{operator.metrics_port}"]}, rule_files=[]
    )
    with prom.prometheus_server(config, prom.rule_file(chart)) as prometheus:
        api = prometheus.api
        where = f'job="{job}",namespace="{RELEASE_NAMESPACE}"'
        api.wait_for(f"up{{{where}}} == 1", timeout=60, what="the operator scraped")

        def m(metric: str, **labels: str) -> str:
            return (
                metric + "{" + ",".join([where, *(f'{k}="{v}"' for k, v in labels.items())]) + "}"
            )

        expectations = {
            "reconciles by result": m("jewelry_monitoring_reconciles_total", result="success"),
            "reconciles that scheduled a retry": m(
                "jewelry_monitoring_reconciles_total", result="requeue_after"
            ),
            "reconcile durations": m("jewelry_monitoring_reconcile_duration_seconds_count"),
            "queue depth": m("jewelry_monitoring_queue_depth") + " >= 0",
            "oldest wait": m("jewelry_monitoring_queue_oldest_wait_seconds") + " >= 0",
            "retries": m("jewelry_monitoring_retries_total", reason="requeue_after"),
            "children by kind and action": m(
                "jewelry_monitoring_child_writes_total", kind="Service", action="Created"
            )
            + " >= 2",
            "API latency by verb": m(
                "jewelry_monitoring_api_request_duration_seconds_count", verb="patch"
            ),
            "API errors by verb": m(
                "jewelry_monitoring_api_request_errors_total", verb="patch", code="422"
            ),
            "leader status": m("jewelry_monitoring_leader") + " == 1",
        }
        samples = {}
        for what, selector in expectations.items():
            expr = selector if " " in selector else f"{selector} > 0"
            result = api.wait_for(expr, timeout=30, what=what)
            samples[what] = [(r["metric"].get("verb", ""), r["value"][1]) for r in result]
        # The rules load and evaluate; a live, leading operator fires none of them.
        groups = wait_for(lambda: _evaluated(api), timeout=30, what="the rules evaluated")
        assert {rule["name"] for group in groups for rule in group["rules"]} == {
            "JewelryMonitoringOperatorDown",
            "JewelryMonitoringReconcileErrors",
            "JewelryMonitoringOperatorQueueStuck",
        }
        assert all(rule["health"] == "ok" for group in groups for rule in group["rules"])
        # A live, leading, healthy operator: no alert condition holds.
        for group in groups:
            for rule in group["rules"]:
                assert api.query(rule["query"]) == [], (rule["name"], api.query(rule["query"]))
    print(f"scraped samples: {samples}")


def _evaluated(api: prom.PrometheusAPI) -> list[dict[str, Any]] | None:
    groups = api.rules()
    rules = [rule for group in groups for rule in group["rules"]]
    return (
        groups
        if rules and all(rule.get("lastEvaluation", "0001").startswith("2") for rule in rules)
        else None
    )
