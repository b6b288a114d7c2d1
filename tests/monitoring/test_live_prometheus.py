"""Real Prometheus scrapes the real shop and exporters with the operator's own config and rules.

The tests run in file order on one session-scoped ``stack`` (see conftest): first the quiet
state (targets up, no error alert under clean traffic), then 5xx traffic (HighErrorRate fires,
reaches the webhook through Alertmanager, resolves), then what needs traffic of every kind
(recording rules, SLO ratios, metric names), then the failure cases (unapplied migrations,
an exporter stopped). Every wait polls Prometheus with a deadline.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from devkit import prometheus as prom
from devkit.shopapp import APP_DIR, PYTHON, manage
from jewelry_monitoring.builders.dashboards import shared_dashboards

pytestmark = pytest.mark.services

# Metric names the rules or dashboards read that this stack cannot have, and why.
# Anything else missing from Prometheus is a wrong name in rules.py or dashboards.py.
NOT_IN_THIS_STACK = {
    "container_": "cAdvisor metrics come from the kubelet's scrape job, not from the CR's jobs",
}
# Recording rules that cannot produce data in this stack, and why (none expected).
RECORDS_WITHOUT_DATA: dict[str, str] = {}


def loadgen(url: str, requests: int, duration: float) -> dict[str, Any]:
    """``python -m jewelry_shop.loadgen`` (bounded), its JSON stats."""
    res = subprocess.run(
        [
            PYTHON,
            "-m",
            "jewelry_shop.loadgen",
            url,
            "--requests",
            str(requests),
            "--duration",
            str(duration),
        ],
        cwd=APP_DIR,
        capture_output=True,
        text=True,
        timeout=duration + 30,
    )
    assert res.stdout, res.stderr
    stats: dict[str, Any] = json.loads(res.stdout)
    return stats


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def firing(api: prom.PrometheusAPI, alertname: str, extra: str = "") -> str:
    return f'ALERTS{{alertname="{alertname}",alertstate="firing"{extra}}}'


def recorded_names(objects: list[dict[str, Any]]) -> list[str]:
    groups = prom.rule_file(objects)["groups"]
    return [r["record"] for g in groups for r in g["rules"] if "record" in r]


def rule_exprs(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    groups = prom.rule_file(objects)["groups"]
    return [(r.get("record") or r["alert"], r["expr"]) for g in groups for r in g["rules"]]


def dashboards_of(stack: Any) -> dict[str, Any]:
    """The CR's own dashboards, and the chart's with its Grafana variables set to this stack."""
    # One cluster: its series have no cluster label, and Grafana's cluster variable is empty.
    one_cluster = {"cluster": ""}
    models = {}
    for obj in stack.objects:
        if obj["kind"] == "ConfigMap" and "dashboard" in obj["metadata"]["name"]:
            for file_name, text in obj["data"].items():
                models[file_name] = prom.fill_dashboard_variables(json.loads(text), one_cluster)
    values = {
        **one_cluster,
        "namespace": stack.cr.namespace,
        "job": stack.cr.service_name("app"),
        **{f"{c}_job": stack.cr.service_name(c) for c in stack.cr.spec["exporters"]},
        "node_job": stack.node_job,
    }
    for slug, model in shared_dashboards().items():
        models[f"chart {slug}"] = prom.fill_dashboard_variables(model, values)
    return models


# --------------------------------------------------------------------------- quiet state


def test_every_scrape_target_is_up(stack: Any) -> None:
    api: prom.PrometheusAPI = stack.api
    expected = set(stack.jobs.values())
    deadline = time.monotonic() + 30
    while True:
        up = api.query(f'up{{namespace="{stack.cr.namespace}"}}')
        down = {s["metric"]["job"] for s in up if s["value"][1] != "1"}
        missing = expected - {s["metric"]["job"] for s in up}
        if not down and not missing:
            break
        if time.monotonic() > deadline:
            errors = {
                t["labels"]["job"]: t.get("lastError")
                for t in api.targets()
                if t["labels"].get("job") in down
            }
            pytest.fail(f"jobs down: {sorted(down)} {errors}; never scraped: {sorted(missing)}")
        time.sleep(0.5)
    # prometheus-operator's target labels are there for rules and dashboards to select on.
    for series in up:
        assert {"namespace", "job", "service", "pod", "instance", "endpoint"} <= set(
            series["metric"]
        )


def test_no_error_alert_under_clean_traffic(stack: Any) -> None:
    """Traffic through nginx (whose template hides /debug/) has no 5xx: no HighErrorRate."""
    api: prom.PrometheusAPI = stack.api
    stats = loadgen(stack.nginx.url, 300, 8)
    assert not any(s.startswith("5") for s in stats["by_status"]), stats
    sel = stack.sel("app")
    api.wait_for(f"job:django_http_requests:rate5m{{{sel}}} > 0", 20)
    api.wait_for(f"rate(nginx_http_requests_total{{{stack.sel('nginx')}}}[1m]) > 0", 20)
    # Several evaluations with traffic and without errors: the alert stays inactive.
    for _ in range(6):
        assert not api.query('ALERTS{alertname="HighErrorRate"}')
        ratio = api.query(f"job:django_http_responses_5xx:ratio_rate5m{{{sel}}}")
        assert all(float(s["value"][1]) == 0 for s in ratio), ratio
        time.sleep(0.5)
    assert not stack.webhook.alerts("HighErrorRate")


def test_healthy_stack_fires_no_alert_but_the_expected_ones(stack: Any) -> None:
    """No false positives: with everything up and no errors, only these alerts are active."""
    expected = {
        # The second app "pod" runs before its migrate, on purpose (see conftest).
        "DjangoUnappliedMigrations": "firing",
        # A cold cache under seconds of synthetic traffic (products created, read once,
        # deleted) has a low hit ratio by nature; `for: 15m` keeps it pending, not firing.
        "DjangoCacheHitRatioLow": "pending",
    }
    active = {a["labels"]["alertname"]: a["state"] for a in stack.api.alerts()}
    unexpected = {
        name: state for name, state in active.items() if expected.get(name) not in (state, None)
    }
    unexpected.update({n: s for n, s in active.items() if n not in expected})
    assert not unexpected, f"alerts active in a healthy stack: {unexpected}"
    assert active.get("DjangoUnappliedMigrations") == "firing"


# --------------------------------------------------------------------------- 5xx


def test_high_error_rate_fires_and_reaches_the_webhook(stack: Any) -> None:
    api: prom.PrometheusAPI = stack.api
    sel = stack.sel("app")
    error_url = stack.shop.url + "/debug/error"
    # The first 500 creates the series; rate() only counts what comes after Prometheus saw it.
    assert get(error_url) == 500
    api.wait_for(f'django_http_responses_total_by_status_total{{{sel},status="500"}}', 15)
    deadline = time.monotonic() + 60
    sent = 1
    while not api.query(firing(api, "HighErrorRate")):
        if time.monotonic() > deadline:
            ratio = api.query(f"job:django_http_responses_5xx:ratio_rate5m{{{sel}}}")
            pytest.fail(f"HighErrorRate not firing after {sent} errors; ratio {ratio}")
        for _ in range(40):
            assert get(error_url) == 500
        sent += 40
        time.sleep(1.5)
    deadline = time.monotonic() + 30
    while not (received := stack.webhook.alerts("HighErrorRate", "firing")):
        assert time.monotonic() < deadline, "Alertmanager never delivered HighErrorRate"
        time.sleep(0.5)
    alert = received[0]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["namespace"] == stack.cr.namespace
    assert alert["labels"]["job"] == stack.jobs["app"]
    annotations = alert["annotations"]
    assert annotations["summary"]
    assert str(stack.cr.error_threshold) in annotations["description"]
    assert stack.jobs["app"] in annotations["description"]
    assert annotations["runbook_url"].endswith("/higherrorrate")


def test_high_error_rate_resolves_when_errors_stop(stack: Any) -> None:
    """Clean traffic dilutes the 5xx share below the threshold: resolved reaches the webhook."""
    api: prom.PrometheusAPI = stack.api
    deadline = time.monotonic() + 90
    while api.query(firing(api, "HighErrorRate")):
        assert time.monotonic() < deadline, "HighErrorRate still firing without new errors"
        loadgen(stack.nginx.url, 1500, 6)
    while not stack.webhook.alerts("HighErrorRate", "resolved"):
        assert time.monotonic() < deadline, "no resolved HighErrorRate notification"
        time.sleep(0.5)


# --------------------------------------------------------------------------- rules, names


@pytest.fixture(scope="module")
def all_kinds_of_traffic(stack: Any) -> None:
    """Direct traffic on gunicorn: every view, 404s, 409s, the deliberate 500."""
    stats = loadgen(stack.shop.url, 600, 8)
    assert stats["by_status"].get("500"), stats


def test_every_recording_rule_produces_series(stack: Any, all_kinds_of_traffic: None) -> None:
    api: prom.PrometheusAPI = stack.api
    records = [r for r in recorded_names(stack.objects) if r not in RECORDS_WITHOUT_DATA]
    ns = stack.cr.namespace
    deadline = time.monotonic() + 30
    while True:
        empty = [r for r in records if not api.query(f'{r}{{namespace="{ns}"}}')]
        if not empty:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"recording rules without any series after traffic: {empty}")
        time.sleep(1)


def test_slo_error_ratios_are_non_empty_after_5xx(stack: Any, all_kinds_of_traffic: None) -> None:
    api: prom.PrometheusAPI = stack.api
    sel = stack.sel("app")
    for window in ("5m", "1h", "3d"):
        result = api.wait_for(
            f"job:jewelry_slo_availability_errors:ratio_rate{window}{{{sel}}}", 20
        )
        value = float(result[0]["value"][1])
        assert 0 < value < 1, (window, value)
        # Empty if the rule's le matcher missed the 1.0 bucket; most requests are fast.
        latency = api.wait_for(f"job:jewelry_slo_latency_errors:ratio_rate{window}{{{sel}}}", 20)
        assert 0 <= float(latency[0]["value"][1]) < 0.5, latency


def test_every_metric_name_in_rules_and_dashboards_is_really_exported(
    stack: Any, all_kinds_of_traffic: None, celery_tasks: None
) -> None:
    api: prom.PrometheusAPI = stack.api
    records = set(recorded_names(stack.objects))
    where: dict[str, set[str]] = {}
    for name, expr in rule_exprs(stack.objects):
        for metric in prom.promql_metric_names(expr):
            where.setdefault(metric, set()).add(f"rule {name}")
    dashboards = dashboards_of(stack)
    assert dashboards, "no dashboards rendered"
    patterns: dict[str, set[str]] = {}
    for file_name, model in dashboards.items():
        for expr in prom.dashboard_exprs(model):
            for metric in prom.promql_metric_names(expr):
                where.setdefault(metric, set()).add(f"dashboard {file_name}")
            for pattern in prom.promql_name_patterns(expr):
                patterns.setdefault(pattern, set()).add(f"dashboard {file_name}")
    unverified = {m for m in where if any(m.startswith(prefix) for prefix in NOT_IN_THIS_STACK)}
    to_check = sorted(set(where) - records - unverified)
    assert len(to_check) > 40, to_check

    def exported(metric: str) -> bool:
        # Node metrics come from the chart's node exporter, everything else from the CR's jobs.
        job = stack.node_job if metric.startswith("node_") else "|".join(stack.jobs.values())
        return bool(api.query(f'count({{__name__="{metric}",job=~"{job}"}})'))

    missing = [m for m in to_check if not exported(m)]
    assert not missing, "metric names that nothing exports:\n" + "\n".join(
        f"  {m}: {sorted(where[m])}" for m in missing
    )
    # Names picked by pattern (the SLO panels' recorded windows) must pick something.
    assert patterns, "the SLO panels select their recorded windows by name pattern"
    ns = stack.cr.namespace
    unmatched = [
        p for p in patterns if not api.query(f'count({{__name__=~"{p}",namespace="{ns}"}})')
    ]
    assert not unmatched, f"name patterns matching nothing: {unmatched}"


@pytest.fixture(scope="module")
def celery_tasks(stack: Any) -> None:
    """Task runs that succeed and fail on the stack's worker, seen by the Celery exporter."""
    from celery import Celery

    client = Celery(broker=stack.celery_broker)
    try:
        # No order 0: the task returns "missing" (succeeds). A non-numeric id: ValueError.
        client.send_task("orders.send_order_confirmation", args=[0])
        client.send_task("orders.send_order_confirmation", args=["not-a-number"])
    finally:
        client.close()
    sel = stack.sel("celery")
    for outcome in ("succeeded", "failed"):
        stack.api.wait_for(f"celery_task_{outcome}_total{{{sel}}} > 0", 60)


def test_celery_exporter_metric_names(stack: Any, celery_tasks: None) -> None:
    """Every celery_* name the rules and dashboards read is a series of the real exporter."""
    names = sorted(
        {
            m
            for _, expr in rule_exprs(stack.objects)
            + [
                ("", e)
                for model in dashboards_of(stack).values()
                for e in prom.dashboard_exprs(model)
            ]
            for m in prom.promql_metric_names(expr)
            if m.startswith("celery_")
        }
    )
    assert names, "celery is enabled in the CR: its rules and panels should read celery_*"
    api: prom.PrometheusAPI = stack.api
    sel = stack.sel("celery")
    deadline = time.monotonic() + 60  # queue and worker gauges come from periodic inspects
    while missing := [m for m in names if not api.query(f"{m}{{{sel}}}")]:
        assert time.monotonic() < deadline, f"celery names the exporter never exported: {missing}"
        time.sleep(1)


def test_every_rule_evaluates_without_error(stack: Any, all_kinds_of_traffic: None) -> None:
    """Runtime errors (e.g. many-to-many matching) only show with real series: none allowed."""
    api: prom.PrometheusAPI = stack.api
    rules = [r for g in api.rules() for r in g["rules"]]
    expected = sum(len(g["rules"]) for g in prom.rule_file(stack.objects)["groups"])
    assert len(rules) == expected
    assert all(r.get("lastEvaluation", "").startswith("2") for r in rules)
    broken = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not broken, broken


def test_every_dashboard_query_is_valid_promql(stack: Any) -> None:
    api: prom.PrometheusAPI = stack.api
    bad = []
    for file_name, model in dashboards_of(stack).items():
        for expr in prom.dashboard_exprs(model):
            try:
                api.query(expr.replace("$__rate_interval", "1m"))
            except AssertionError as exc:
                bad.append(f"{file_name}: {exc}")
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------------------- failures


def test_unapplied_migrations_fire_then_resolve_after_migrate(stack: Any) -> None:
    """The pending "pod" runs on a database without the orders migration."""
    api: prom.PrometheusAPI = stack.api
    sel = stack.sel("app")
    pending = f"127.0.0.1:{stack.pending_shop.port}"
    gauge = api.wait_for(f'django_migrations_unapplied_total{{{sel},instance="{pending}"}}', 15)
    assert float(gauge[0]["value"][1]) == 1
    assert gauge[0]["metric"]["connection"] == "default"
    healthy = api.query(f'django_migrations_unapplied_total{{{sel},instance!="{pending}"}}')
    assert [float(s["value"][1]) for s in healthy] == [0]
    api.wait_for(firing(api, "DjangoUnappliedMigrations"), 20)
    deadline = time.monotonic() + 30
    while not (received := stack.webhook.alerts("DjangoUnappliedMigrations", "firing")):
        assert time.monotonic() < deadline, "DjangoUnappliedMigrations never delivered"
        time.sleep(0.5)
    assert received[0]["labels"]["connection"] == "default"
    assert received[0]["labels"]["severity"] == "warning"

    manage("migrate", "--noinput", env=stack.pending_env)
    api.wait_for(f'django_migrations_unapplied_total{{{sel},instance="{pending}"}} == 0', 20)
    api.wait_empty(firing(api, "DjangoUnappliedMigrations"), 20)
    while not stack.webhook.alerts("DjangoUnappliedMigrations", "resolved"):
        assert time.monotonic() < deadline + 40, "no resolved DjangoUnappliedMigrations"
        time.sleep(0.5)


def test_exporter_down_alert_fires_when_the_redis_exporter_stops(stack: Any) -> None:
    api: prom.PrometheusAPI = stack.api
    exporter: prom.Process = stack.exporters["redis"]
    assert not api.query(firing(api, "RedisExporterDown"))
    exporter.stop()
    try:
        api.wait_for(f"up{{{stack.sel('redis')}}} == 0", 15)
        api.wait_for(firing(api, "RedisExporterDown"), 15)
        deadline = time.monotonic() + 30
        while not (received := stack.webhook.alerts("RedisExporterDown", "firing")):
            assert time.monotonic() < deadline, "RedisExporterDown never delivered"
            time.sleep(0.5)
        assert received[0]["labels"]["job"] == stack.jobs["redis"]
        assert received[0]["annotations"]["runbook_url"].endswith("/redisexporterdown")
    finally:
        exporter.start()
    api.wait_for(f"up{{{stack.sel('redis')}}} == 1", 15)
    api.wait_empty(firing(api, "RedisExporterDown"), 15)
    # redis_up is 1 again: RedisDown (server unreachable) never fired for an exporter outage.
    assert not stack.webhook.alerts("RedisDown")
