"""Monitoring in pods (issue 8 part 2): the real prometheus-operator, running in the cluster
from our image, makes a kube-prometheus-stack-style Prometheus and Alertmanager
(devkit.prometheus_stack) that select the example CR's ServiceMonitors and PrometheusRule by
its ``release`` label. Everything is read as a user reads it: through the Prometheus and
Alertmanager HTTP APIs, port-forwarded to 127.0.0.1 (devkit.product.port_forward).

The tests run in file order on the session's product (see conftest): the targets up at the
CR's intervals and the rules loaded, the load generator's traffic, the 5xx endpoint switched
on (HighErrorRate fires and reaches Alertmanager), then the example queries and every
dashboard panel, which by then have every kind of traffic behind them. Every wait polls
with a bound.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from devkit import prometheus as prom
from devkit.exporter_report import exporter_report, exporters_in, workload_report
from devkit.kubetools import wait_for
from devkit.product import (
    POD_TIMEOUT,
    SHOP,
    SHOP_FRONT,
    all_available,
    load_generator,
    pods_of,
    port_forward,
    wait_targets_up,
)
from devkit.prometheus_stack import (
    ALERTMANAGER_PODS,
    ALERTMANAGER_PORT,
    PROMETHEUS_PODS,
    PROMETHEUS_PORT,
)
from jewelry_monitoring.builders.common import child_name
from jewelry_monitoring.builders.dashboards import shared_dashboards

from .conftest import CR_APPLIED, Stopwatch

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(1800)]

APP_INTERVAL, EXPORTER_INTERVAL = "15s", "30s"  # the example CR's (the spec's defaults)
# Grafana's $__rate_interval for the slowest scrape (30 s): four intervals.
RATE_INTERVAL = "2m"
APP_PODS, APP_PORT = "app.kubernetes.io/name=jewelry-shop", 8000  # manifests/dev/app.yaml
SHOP_CELERY_WORKERS = ["jewelry-shop-worker"]  # manifests/dev/app.yaml

# Queries a user writes first for a django-prometheus app, with the metric names the app
# exports as measured (app/METRICS.md, from a real scrape): there is no
# django_http_requests_latency_seconds_bucket and no django_cache_hits_total / _misses_total
# (django-prometheus labels latency by view and method, and names its cache counters
# django_cache_get_*); the per-view buckets are summed by le for one p95.
EXAMPLE_QUERIES = {
    "requests per second": "rate(django_http_requests_total_by_method_total[5m])",
    "requests per second by view": (
        "rate(django_http_requests_total_by_view_transport_method_total[5m])"
    ),
    "95th percentile latency": "histogram_quantile(0.95, sum by (le) "
    "(rate(django_http_requests_latency_seconds_by_view_method_bucket[5m])))",
    "average latency": "sum(rate(django_http_requests_latency_seconds_by_view_method_sum[5m]))"
    " / sum(rate(django_http_requests_latency_seconds_by_view_method_count[5m]))",
    "5xx error rate": 'rate(django_http_responses_total_by_status_total{status=~"5.."}[5m])',
    "error percentage": 'sum(rate(django_http_responses_total_by_status_total{status=~"5.."}'
    "[5m])) / sum(rate(django_http_responses_total_by_status_total[5m])) * 100",
    "database query duration p95": (
        "histogram_quantile(0.95, rate(django_db_query_duration_seconds_bucket[5m]))"
    ),
    "database queries per second": "rate(django_db_execute_total[5m])",
    "database errors": "rate(django_db_errors_total[5m])",
    "cache hit rate": "sum(rate(django_cache_get_hits_total[5m])) / "
    "(sum(rate(django_cache_get_hits_total[5m])) + sum(rate(django_cache_get_misses_total[5m])))"
    " * 100",
    "cache operations per second": "rate(django_cache_get_total[5m])",
}
# Queries that read these metrics cannot return data in this stack, and why. The test checks
# that each entry still excuses some query (no stale excuses).
NO_DATA_IN_THIS_STACK = {
    "container_": "cAdvisor's container metrics come from the kubelet's scrape job, which "
    "kube-prometheus-stack adds and this stack does not (nothing here monitors the kubelet)",
    "node_": "the chart's node exporter (nodeExporter.enabled) is off in the e2e install: it "
    "would listen on the host's network, and this host only opens loopback ports",
    "redis_memory_max_bytes": "manifests/dev's Redis sets no maxmemory (0: unlimited), and the "
    "panel divides by a limit only where one is set",
}


# -- the stack -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus_api(
    e2e_api: client.ApiClient, monitoring_stack: str
) -> Iterator[prom.PrometheusAPI]:
    with port_forward(e2e_api, monitoring_stack, PROMETHEUS_PODS, PROMETHEUS_PORT) as url:
        yield prom.PrometheusAPI(url)


@pytest.fixture(scope="module")
def alertmanager_url(e2e_api: client.ApiClient, monitoring_stack: str) -> Iterator[str]:
    with port_forward(e2e_api, monitoring_stack, ALERTMANAGER_PODS, ALERTMANAGER_PORT) as url:
        yield url


@pytest.fixture(scope="module")
def shop_url(e2e_api: client.ApiClient, shop: str) -> Iterator[str]:
    """The shop through nginx, as a browser sees it, on 127.0.0.1 (what the loopback-only
    load generator accepts)."""
    with port_forward(e2e_api, shop, *SHOP_FRONT) as url:
        yield url


@pytest.fixture(scope="module")
def app_url(e2e_api: client.ApiClient, shop: str) -> Iterator[str]:
    """The Django app itself (gunicorn, port 8000) on 127.0.0.1, as a client inside the
    cluster reaches it: nginx keeps /debug/, /healthz and /readyz from the outside."""
    with port_forward(e2e_api, shop, APP_PODS, APP_PORT) as url:
        yield url


def _children(cr: dict[str, Any], kind: str) -> list[str]:
    return [c["name"] for c in cr["status"]["children"] if c["kind"] == kind]


# -- targets and rules -------------------------------------------------------------------------


def test_every_target_of_the_cr_is_up_at_its_interval(
    e2e_api: client.ApiClient,
    monitoring_stack: str,
    example_cr: dict[str, Any],
    prometheus_api: prom.PrometheusAPI,
    stopwatch: Stopwatch,
) -> None:
    assert len(_children(example_cr, "ServiceMonitor")) == 5  # the app and four exporters
    targets = wait_targets_up(prometheus_api, example_cr, e2e_api)
    stopwatch.step("example CR applied -> all its targets up", stopwatch.marks[CR_APPLIED])
    app_job = child_name(example_cr["metadata"]["name"], "app-metrics")
    intervals = {t["labels"]["job"]: t["scrapeInterval"] for t in targets}
    assert intervals.pop(app_job) == APP_INTERVAL, targets
    assert set(intervals.values()) == {EXPORTER_INTERVAL}, intervals
    assert len(intervals) == 4, intervals


def test_every_rule_group_is_loaded_and_healthy(
    e2e_api: client.ApiClient, example_cr: dict[str, Any], prometheus_api: prom.PrometheusAPI
) -> None:
    (rule_name,) = _children(example_cr, "PrometheusRule")
    rule = client.CustomObjectsApi(e2e_api).get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", SHOP, "prometheusrules", rule_name
    )
    expected = {g["name"]: len(g["rules"]) for g in rule["spec"]["groups"]}

    def evaluated() -> dict[str, list[dict[str, Any]]] | None:
        loaded = {g["name"]: g["rules"] for g in prometheus_api.rules() if g["name"] in expected}
        if set(loaded) != set(expected):
            return None
        rules = [r for group in loaded.values() for r in group]
        return loaded if all(r.get("health") != "unknown" for r in rules) else None

    # Loaded when the config reloader has seen the new rule file; health is "unknown" until
    # the first evaluation.
    loaded = wait_for(evaluated, timeout=POD_TIMEOUT, interval=2, what="rule groups evaluated")
    assert {name: len(rules) for name, rules in loaded.items()} == expected
    unhealthy = {
        r["name"]: r.get("lastError") for g in loaded.values() for r in g if r["health"] != "ok"
    }
    assert not unhealthy, unhealthy


# -- traffic -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def load_generator_run(shop_url: str, stopwatch: Stopwatch) -> dict[str, Any]:
    """One bounded run of the app's load generator (every view, every method) on the shop."""
    started = time.monotonic()
    stats = load_generator(shop_url, requests=400, duration=60)
    stopwatch.step(f"load generator ({stats['requests']} requests)", started)
    assert stats["requests"] > 100 and not stats["failures"], stats
    return stats


def test_the_kubelets_probes_are_not_counted_as_requests(
    example_cr: dict[str, Any],
    prometheus_api: prom.PrometheusAPI,
    load_generator_run: dict[str, Any],
) -> None:
    """The kubelet has probed the shop's /readyz and /healthz (manifests/dev/app.yaml) since
    its pod started, and Prometheus scrapes only a ready pod, whose /readyz Django served.
    The load generator's traffic (through nginx, which keeps the probes' paths from the
    outside) is counted by view; the probes are not."""
    job = child_name(example_cr["metadata"]["name"], "app-metrics")
    by_view = (
        "count by (view) (django_http_requests_total_by_view_transport_method_total"
        f'{{namespace="{SHOP}",job="{job}"}})'
    )

    def views() -> set[str] | None:
        found = {series["metric"]["view"] for series in prometheus_api.query(by_view)}
        return found if "product-list" in found else None

    counted = wait_for(views, timeout=POD_TIMEOUT, interval=2, what="the traffic, by view")
    assert not counted & {"healthz", "readyz"}, counted


def _firing(api: prom.PrometheusAPI, alertname: str) -> list[dict[str, Any]]:
    return api.query(f'ALERTS{{alertname="{alertname}",alertstate="firing"}}')


def test_clean_traffic_fires_no_high_error_rate(
    prometheus_api: prom.PrometheusAPI, load_generator_run: dict[str, Any]
) -> None:
    # The endpoint is off: /debug/error answers 404, and no 5xx ever counted.
    assert load_generator_run["by_status"].get("500") is None, load_generator_run
    assert not prometheus_api.query(f'ALERTS{{alertname="HighErrorRate",namespace="{SHOP}"}}'), (
        "HighErrorRate pending or firing without a single 5xx"
    )


def _alertmanager_alerts(url: str, alertname: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/api/v2/alerts?active=true", timeout=30) as response:
        alerts: list[dict[str, Any]] = json.loads(response.read())
    return [a for a in alerts if a["labels"].get("alertname") == alertname]


def test_the_5xx_endpoint_fires_high_error_rate_into_alertmanager(
    e2e_api: client.ApiClient,
    app_url: str,
    alertmanager_url: str,
    prometheus_api: prom.PrometheusAPI,
    load_generator_run: dict[str, Any],
    stopwatch: Stopwatch,
) -> None:
    """ENABLE_ERROR_ENDPOINT on the app's Deployment (a rollout), then errors among healthy
    requests to the app, at a bounded pace, until Alertmanager holds the alert."""
    apps = client.AppsV1Api(e2e_api)
    switched = time.monotonic()
    patch = {"name": "web", "env": [{"name": "ENABLE_ERROR_ENDPOINT", "value": "true"}]}
    apps.patch_namespaced_deployment(
        "jewelry-shop", SHOP, {"spec": {"template": {"spec": {"containers": [patch]}}}}
    )
    wait_for(
        lambda: (
            all_available(apps, SHOP, ["jewelry-shop"])
            and len(pods_of(client.CoreV1Api(e2e_api), SHOP, APP_PODS)) == 1
        ),
        timeout=POD_TIMEOUT,
        interval=2,
        what="the shop rolled out with its error endpoint on",
    )
    host, port = urlsplit(app_url).hostname, urlsplit(app_url).port
    assert host and port
    connection = http.client.HTTPConnection(host, port, timeout=30)
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + POD_TIMEOUT
    alerts: list[dict[str, Any]] = []
    # At most 2 requests a second, half of them errors: a 50 % share, far above the
    # threshold (5 %), at a rate far above the floor (0.1/s).
    for _ in range(int(POD_TIMEOUT)):
        for path in ("/debug/error", "/api/products/?limit=1"):
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            except (OSError, http.client.HTTPException):
                connection.close()  # reconnects on the next request
        alerts = _alertmanager_alerts(alertmanager_url, "HighErrorRate")
        if alerts or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    connection.close()
    assert statuses.get(500), f"the error endpoint never answered 500: {statuses}"
    assert alerts, (
        f"HighErrorRate not in Alertmanager after {statuses}; Prometheus has"
        f" {prometheus_api.query('ALERTS')}"
    )
    stopwatch.step("5xx endpoint switched on -> HighErrorRate in Alertmanager", switched)
    (alert,) = alerts
    assert alert["labels"]["namespace"] == SHOP, alert
    assert alert["labels"]["severity"] == "critical", alert
    assert alert["status"]["state"] == "active", alert
    assert _firing(prometheus_api, "HighErrorRate")


# -- what users query --------------------------------------------------------------------------


def _dashboard_queries(cr_name: str, exporters: list[str]) -> dict[str, str]:
    """Every panel query of the chart's dashboards, as Grafana sends it for this CR: panel
    title -> PromQL."""
    values = {
        "cluster": "",  # one cluster: no cluster label, the variable is empty
        "namespace": SHOP,
        "job": child_name(cr_name, "app-metrics"),
        "node_job": "node-exporter",
        "__rate_interval": RATE_INTERVAL,
        **{f"{name}_job": child_name(cr_name, f"{name}-exporter") for name in exporters},
    }
    queries = {}
    for slug, model in shared_dashboards().items():
        filled = prom.fill_dashboard_variables(model, values)
        for panel in filled["panels"]:
            for number, expr in enumerate(prom.dashboard_exprs(panel)):
                queries[f"{slug}: {panel.get('title', '?')} #{number}"] = expr
    return queries


def test_the_example_queries_and_every_dashboard_panel_return_data(
    e2e_api: client.ApiClient,
    example_cr: dict[str, Any],
    prometheus_api: prom.PrometheusAPI,
    shop_url: str,
) -> None:
    """After the 5xx traffic and a load generator run on the app as it runs now (the switch
    replaced its pod, and panels rate over 2 minutes), every query has series, except those
    NO_DATA_IN_THIS_STACK names (with its reason)."""
    load_generator(shop_url, requests=400, duration=60)
    exporters = sorted(example_cr["spec"]["exporters"])
    queries = {f"example: {name}": expr for name, expr in EXAMPLE_QUERIES.items()}
    queries.update(_dashboard_queries(example_cr["metadata"]["name"], exporters))
    excused: dict[str, str] = {}
    to_check: dict[str, str] = {}
    for title, expr in queries.items():
        names = prom.promql_metric_names(expr)
        reasons = [p for p in NO_DATA_IN_THIS_STACK if any(n.startswith(p) for n in names)]
        if reasons:
            excused[title] = reasons[0]
        else:
            to_check[title] = expr
    assert set(excused.values()) == set(NO_DATA_IN_THIS_STACK), "a stale excuse"
    assert len(to_check) > 40, sorted(to_check)

    # Recording rules and 5m rates settle within a few evaluations of the last traffic.
    deadline = time.monotonic() + 120
    while True:
        missing = {t: e for t, e in to_check.items() if not prometheus_api.query(e)}
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(5)
    if missing:
        silent = exporters_in(example_cr, missing.values())
        # The Celery exporter counts the shop worker's events: its pods and log too.
        watched = SHOP_CELERY_WORKERS if "celery" in silent else []
        pytest.fail(
            "queries without data:\n"
            + "\n".join(f"  {t}: {e}" for t, e in missing.items())
            + "\n"
            + exporter_report(e2e_api, prometheus_api, example_cr, silent)
            + "\n"
            + workload_report(e2e_api, SHOP, watched)
        )
    print(f"\n{len(to_check)} queries returned data; excused ({len(excused)}):")
    for title, prefix in sorted(excused.items()):
        print(f"  {title}: {NO_DATA_IN_THIS_STACK[prefix]}")
    # Restarts and scrape history of a passing run too (shown with -rP).
    print(exporter_report(e2e_api, prometheus_api, example_cr, exporters))
