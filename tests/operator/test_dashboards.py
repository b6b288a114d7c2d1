"""Dashboards: valid Grafana models, PromQL that parses, and only metric names that exist.

``KNOWN_METRICS`` below is the one inventory of metric names the rules and dashboards may
use. The app's names come from app/METRICS.md (generated from a real scrape); the exporter
names were measured by scraping the Debian exporters against real PostgreSQL, Redis and nginx
servers, and ``test_exporters_really_export_the_inventoried_names`` re-measures them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml

from jewelry_monitoring.builders.common import Owner
from jewelry_monitoring.builders.dashboards import (
    JOB_VARIABLES,
    dashboard_uid,
    dashboards,
    file_name,
    shared_dashboards,
)
from jewelry_monitoring.builders.desired import desired_objects
from jewelry_monitoring.builders.rules import rule_groups
from jewelry_monitoring.spec import JewelryMonitoringSpec

ROOT = Path(__file__).resolve().parents[2]
METRICS_DOC = ROOT / "app" / "METRICS.md"
PROMTOOL = Path("/usr/bin/promtool")  # from Debian's prometheus, installed by tests/toolchain/setup

FULL_SPEC: dict[str, Any] = {
    "app": {"podSelector": {"app": "jewelry"}},
    "exporters": {
        "postgres": {"enabled": True, "dataSource": {"name": "pg", "key": "dsn"}},
        "redis": {"enabled": True},
        "nginx": {"enabled": True},
        "celery": {"enabled": True, "brokerUrl": {"name": "broker", "key": "url"}},
    },
    "slos": {"availability": {"objective": 99.9}, "latency": {"objective": 99}},
}


def owner(spec: dict[str, Any], name: str = "shop", namespace: str = "jewelry") -> Owner:
    return Owner(
        name=name,
        namespace=namespace,
        uid="uid-1",
        spec=JewelryMonitoringSpec.model_validate(spec),
    )


# --- The metric inventory -----------------------------------------------------------------


def app_metrics() -> set[str]:
    """Sample names from the table in app/METRICS.md (generated from a real scrape)."""
    return set(re.findall(r"^\| `([a-zA-Z_:][\w:]*)` \|", METRICS_DOC.read_text(), re.M))


def app_metric_labels() -> dict[str, set[str]]:
    """Labels of each app sample name, from the Labels column of app/METRICS.md."""
    labels = {}
    for name, column in re.findall(
        r"^\| `([a-zA-Z_:][\w:]*)` \| \w+ \| ([^|]*) \|", METRICS_DOC.read_text(), re.M
    ):
        labels[name] = {label for label in re.findall(r"`(\w+)`", column) if label[0] != "_"}
    return labels


# Scraped against real servers from the exporters at the CR's versions (devkit.prometheus):
# postgres_exporter 0.17.1 (PostgreSQL 15), redis_exporter 1.74.0 (redis-server 7),
# node_exporter 1.9.1, and Debian's nginx-prometheus-exporter 0.11 (the Go proxy refuses the
# CR's 1.4.2; see app/METRICS.md).
EXPORTER_METRICS: dict[str, set[str]] = {
    "postgres": {
        "pg_up",
        "pg_stat_database_numbackends",
        "pg_settings_max_connections",
        "pg_stat_database_xact_commit",
        "pg_stat_database_xact_rollback",
        "pg_stat_database_blks_hit",
        "pg_stat_database_blks_read",
        "pg_stat_database_deadlocks",
        "pg_database_size_bytes",
    },
    "redis": {
        "redis_up",
        "redis_memory_used_bytes",
        "redis_memory_max_bytes",
        "redis_connected_clients",
        "redis_blocked_clients",
        "redis_config_maxclients",
        "redis_commands_total",
        "redis_keyspace_hits_total",
        "redis_keyspace_misses_total",
        "redis_evicted_keys_total",
        "redis_rejected_connections_total",
    },
    "nginx": {
        "nginx_up",
        "nginx_http_requests_total",
        "nginx_connections_accepted",
        "nginx_connections_handled",
        "nginx_connections_active",
        "nginx_connections_reading",
        "nginx_connections_writing",
        "nginx_connections_waiting",
    },
    "node": {
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
        "node_filesystem_avail_bytes",
        "node_filesystem_size_bytes",
        "node_filesystem_readonly",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
        "node_disk_read_bytes_total",
        "node_disk_written_bytes_total",
        "node_load1",
    },
}
# danihodovic/celery-exporter (the default image) is not packaged here, so these are read from
# its source (src/exporter.py: prometheus_client Counters "celery_task_<event>", Gauges
# "celery_worker_up", "celery_worker_tasks_active", "celery_queue_length").
CELERY_METRICS = {
    "celery_task_failed_total",
    "celery_task_succeeded_total",
    "celery_task_retried_total",
    "celery_task_rejected_total",
    "celery_worker_up",
    "celery_worker_tasks_active",
    "celery_queue_length",
}
# Not exported by anything we run: series Prometheus makes for every target, and the
# kubelet's cAdvisor series (kube-prometheus-stack scrapes them) for pod CPU and memory.
PROMETHEUS_SYNTHETIC = {
    "up",
    "scrape_duration_seconds",
    "scrape_samples_post_metric_relabeling",
    "ALERTS",
}
CADVISOR_METRICS = {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"}


def known_metrics() -> set[str]:
    return (
        app_metrics()
        | set().union(*EXPORTER_METRICS.values())
        | CELERY_METRICS
        | PROMETHEUS_SYNTHETIC
        | CADVISOR_METRICS
    )


_KEYWORDS = {"and", "or", "unless", "bool", "offset"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (functions, labels and keywords removed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", " ", text)
    names = set()
    for match in re.finditer(r"([a-zA-Z_:][\w:]*)\s*(\()?", text):
        if match.group(2) or match.group(1) in _KEYWORDS:
            continue
        names.add(match.group(1))
    return names


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (job, le) (rate(a_total{x="y{z}"}[5m])) / on (job) group_left() '
        'b:rec:rate5m{q="1"} > (14.4 * 1e-05) and up == 0 or vector(1)'
    )
    assert metric_names(expr) == {"a_total", "b:rec:rate5m", "up"}


def test_the_inventory_reads_the_app_metrics_doc() -> None:
    names = app_metrics()
    assert app_metric_labels()["django_db_errors_total"] == {"alias", "type", "vendor"}
    assert app_metric_labels()["django_http_requests_latency_seconds_by_view_method_bucket"] == {
        "method",
        "view",
        "le",
    }
    assert "django_http_responses_total_by_status_total" in names
    assert "django_http_requests_latency_seconds_by_view_method_bucket" in names
    # The names older docs use do not exist.
    assert "django_http_requests_latency_seconds_bucket" not in names
    assert "django_cache_hits_total" not in names


# --- What the builders produce ------------------------------------------------------------


def rule_exprs(spec: dict[str, Any]) -> list[str]:
    return [rule["expr"] for group in rule_groups(owner(spec)) for rule in group["rules"]]


def recorded(spec: dict[str, Any]) -> set[str]:
    return {
        rule["record"]
        for group in rule_groups(owner(spec))
        for rule in group["rules"]
        if "record" in rule
    }


def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in model["panels"] if p["type"] != "row"]


def _exprs_of(model: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in panels(model) for target in panel["targets"]]


def dashboard_exprs(spec: dict[str, Any]) -> list[str]:
    return [expr for model in dashboards(owner(spec)).values() for expr in _exprs_of(model)]


def shared_exprs() -> list[str]:
    return [expr for model in shared_dashboards().values() for expr in _exprs_of(model)]


def test_five_dashboards_as_json_with_panels() -> None:
    models = dashboards(owner(FULL_SPEC))
    assert sorted(models) == ["cache", "database", "django", "slo", "system"]
    for model in models.values():
        assert json.loads(json.dumps(model)) == model
        assert panels(model)
        assert model["tags"][0] == "jewelry"
        assert model["uid"]
        assert "jewelry/shop" in model["title"]
        assert model["annotations"] == {"list": []}
        assert "jewelry:jewelry/shop" in model["tags"]
        [link] = model["links"]
        assert (link["type"], link["tags"]) == ("dashboards", ["jewelry:jewelry/shop"])
        for panel in panels(model):
            assert panel["options"], panel["title"]


def test_datasource_variable_is_used_by_every_panel_and_query() -> None:
    models = [*dashboards(owner(FULL_SPEC)).values(), *shared_dashboards().values()]
    for model in models:
        variable = model["templating"]["list"][0]
        assert (variable["name"], variable["type"], variable["query"]) == (
            "datasource",
            "datasource",
            "prometheus",
        )
        for panel in panels(model):
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            ref_ids = [t["refId"] for t in panel["targets"]]
            assert len(ref_ids) == len(set(ref_ids)) and all(ref_ids)
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"]


def test_panel_ids_are_unique_and_panels_fit_the_grid() -> None:
    for model in [*dashboards(owner(FULL_SPEC)).values(), *shared_dashboards().values()]:
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids))
        for panel in model["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24


def test_uid_is_stable_short_and_distinct() -> None:
    first = dashboards(owner(FULL_SPEC))
    again = dashboards(owner(FULL_SPEC))
    assert [m["uid"] for m in first.values()] == [m["uid"] for m in again.values()]
    uids = {
        dashboard_uid(owner(FULL_SPEC, name, namespace), slug)
        for name in ("shop", "outlet")
        for namespace in ("jewelry", "staging")
        for slug in ("django", "database", "cache", "system")
    }
    assert len(uids) == 16
    assert all(len(uid) <= 40 for uid in uids)
    long = owner(FULL_SPEC, "x" * 63, "y" * 63)
    assert len(dashboard_uid(long, "database")) <= 40


def test_queries_are_scoped_to_this_cr() -> None:
    for expr in dashboard_exprs(FULL_SPEC):
        selectors = re.findall(r"\{([^}]*)\}", expr)
        assert selectors, expr
        for matchers in selectors:
            assert 'namespace="jewelry"' in matchers, expr
    other = " ".join(
        e for m in dashboards(owner(FULL_SPEC, "outlet")).values() for e in _exprs_of(m)
    )
    assert "shop-" not in other and "outlet-app-metrics" in other


def test_nothing_scraped_means_no_dashboards() -> None:
    assert dashboards(owner({"app": {"podSelector": {"a": "b"}, "enabled": False}})) == {}


def test_app_disabled_leaves_exporter_dashboards_without_app_jobs() -> None:
    spec = {
        "app": {"podSelector": {"a": "b"}, "enabled": False},
        "exporters": {"redis": {"enabled": True}},
    }
    models = dashboards(owner(spec))
    assert sorted(models) == ["cache", "system"]
    exprs = [e for model in models.values() for e in _exprs_of(model)]
    assert not any("app-metrics" in e for e in exprs)


def test_exporter_panels_only_when_the_exporter_is_enabled() -> None:
    app_only = " ".join(dashboard_exprs({"app": {"podSelector": {"app": "jewelry"}}}))
    for prefix in ("pg_", "redis_", "nginx_", "celery_", "node_"):
        assert prefix not in app_only
    full = " ".join(dashboard_exprs(FULL_SPEC))
    for prefix in ("pg_", "redis_", "nginx_", "celery_"):
        assert prefix in full
    # Nodes are the cluster's (the chart's node exporter): only the shared dashboards show them.
    assert "node_" not in full
    assert "node_" in " ".join(shared_exprs())


def test_dashboards_read_the_recording_rules() -> None:
    for exprs in (dashboard_exprs(FULL_SPEC), shared_exprs()):
        used = set().union(*(metric_names(e) for e in exprs))
        for record in (
            "job:django_http_requests:rate5m",
            "job:django_http_responses_5xx:ratio_rate5m",
            "job:django_http_request_latency_seconds:p95_5m",
            "job_backend:django_cache_get_hits:ratio_rate5m",
            "job:django_db_queries:rate5m",
        ):
            assert record in used


@pytest.mark.parametrize("window", ["7d", "28d", "30d"])
def test_slo_panels_show_every_recorded_window(window: str) -> None:
    """One query picks every SLO window a CR records, whichever its SLO window is."""
    spec = {**FULL_SPEC, "slos": {**FULL_SPEC["slos"], "window": window}}
    [slo_query] = [e for e in dashboard_exprs(spec) if "slo_availability_errors:ratio_rate.+" in e]
    pattern = re.search(r'__name__=~"([^"]+)"', slo_query).group(1)  # type: ignore[union-attr]
    slo_records = {r for r in recorded(spec) if "slo_availability_errors:ratio_rate" in r}
    assert len(slo_records) == 8  # the 7 alerting windows and the SLO window
    assert all(re.fullmatch(pattern, record) for record in slo_records)
    assert not re.fullmatch(pattern, "job:django_http_requests:rate5m")


def test_every_metric_name_is_recorded_or_measured() -> None:
    allowed = known_metrics() | recorded(FULL_SPEC)
    used = {
        name
        for expr in rule_exprs(FULL_SPEC) + dashboard_exprs(FULL_SPEC) + shared_exprs()
        for name in metric_names(expr)
    }
    assert used - allowed == set()
    # And dashboards only read records that the rules really define.
    records = {n for n in used if ":" in n}
    assert records <= recorded(FULL_SPEC)


# Labels every scraped series gets from Prometheus / prometheus-operator, not the app, and
# the external label ``cluster`` of a global view.
TARGET_LABELS = {
    "namespace",
    "job",
    "instance",
    "pod",
    "service",
    "endpoint",
    "container",
    "cluster",
}


def test_app_queries_group_only_by_labels_the_app_exports() -> None:
    """``by (view)`` on a metric without ``view`` would silently sum everything into one."""
    labels = app_metric_labels()
    checked = 0
    for expr in rule_exprs(FULL_SPEC) + dashboard_exprs(FULL_SPEC) + shared_exprs():
        names = metric_names(expr)
        if not names or not names <= set(labels):
            continue
        available = set().union(*(labels[n] for n in names)) | TARGET_LABELS
        for clause in re.findall(r"\b(?:by|without|on)\s*\(([^)]*)\)", expr):
            used = {label.strip() for label in clause.split(",") if label.strip()}
            assert used <= available, (expr, used - available)
        checked += 1
    assert checked > 20


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    """promtool parses each query (the CR's and the chart's) as a throwaway recording rule."""
    exprs = sorted(set(dashboard_exprs(FULL_SPEC)) | set(shared_exprs()))
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": e.replace("$__rate_interval", "5m")}
        for i, e in enumerate(exprs)
    ]
    path = tmp_path / "dashboard_queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    result = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


# --- One set for everyone, per-CR sets that never collide ----------------------------------


def config_maps(spec: dict[str, Any], name: str, namespace: str) -> list[dict[str, Any]]:
    objects = desired_objects(owner(spec, name, namespace), frozenset())
    return [o for o in objects if o["kind"] == "ConfigMap"]


def test_per_cr_dashboards_are_an_opt_in() -> None:
    assert config_maps(FULL_SPEC, "shop", "jewelry") == []
    opted_in = config_maps({**FULL_SPEC, "dashboards": {"enabled": True}}, "shop", "jewelry")
    assert len(opted_in) == 5


def test_a_resources_dashboards_are_compact_and_the_charts_readable() -> None:
    """Only the Grafana sidecar reads a resource's dashboard ConfigMaps, and every reconcile
    renders them: compact JSON (the C encoder, a quarter smaller). The chart's files are read
    by people: indented. Both hold the same dashboard, keys sorted."""
    spec = {**FULL_SPEC, "dashboards": {"enabled": True}}
    for config_map in config_maps(spec, "shop", "jewelry"):
        [text] = config_map["data"].values()
        model = json.loads(text)
        assert text == json.dumps(model, separators=(",", ":"), sort_keys=True)
        assert "\n" not in text
    from devkit.manifests import render_chart_dashboards

    for name, text in render_chart_dashboards().items():
        model = json.loads(text)
        assert text == json.dumps(model, indent=1, sort_keys=True) + "\n", name


def test_dashboards_of_different_crs_never_share_a_file_name_or_uid() -> None:
    """The Grafana sidecar names files after ConfigMap keys, all in one folder by default:
    two CRs with the same key overwrite each other's dashboard (and flap)."""
    spec = {**FULL_SPEC, "dashboards": {"enabled": True}}
    keys: list[str] = []
    uids: list[str] = []
    for name, namespace in [("shop", "jewelry"), ("outlet", "jewelry"), ("shop", "staging")]:
        for config_map in config_maps(spec, name, namespace):
            [(key, text)] = config_map["data"].items()
            keys.append(key)
            uids.append(json.loads(text)["uid"])
            assert key == f"{json.loads(text)['uid']}.json"
    assert len(keys) == len(set(keys)) == 15
    assert len(uids) == len(set(uids)) == 15
    shared = {file_name(model) for model in shared_dashboards().values()}
    assert shared.isdisjoint(keys)


def test_shared_dashboards_let_the_viewer_pick_namespace_and_jobs() -> None:
    models = shared_dashboards()
    assert sorted(models) == ["cache", "database", "django", "slo", "system"]
    for slug, model in models.items():
        assert model["uid"] == f"jewelry-{slug}"
        assert file_name(model) == f"jewelry-{slug}.json"
        assert model["title"] == model["title"].split(" (")[0]  # no CR in the title
        variables = {v["name"]: v for v in model["templating"]["list"]}
        assert variables["namespace"]["type"] == "query"
        assert "label_values(" in variables["namespace"]["query"]
        for expr in _exprs_of(model):
            for matchers in re.findall(r"\{([^}]*)\}", expr):
                if "__name__" in matchers and "job" not in matchers:
                    continue
                picked = re.findall(r'(namespace|job)="\$(\w+)"', matchers)
                assert picked, (slug, expr)
                for label, variable in picked:
                    assert variable in variables, (slug, variable)
                    assert label == "namespace" or variable in JOB_VARIABLES.values()
    # Every section, whatever any CR enables: SLOs, every exporter, the nodes.
    text = json.dumps(models)
    for needle in (
        "slo_availability",
        "slo_latency",
        "pg_up",
        "redis_up",
        "nginx_connections_active",
        "celery_queue_length",
        "node_load1",
    ):
        assert needle in text, needle


def test_chart_dashboards_are_generated_from_the_builders() -> None:
    """charts/jewelry-monitoring/dashboards/ holds exactly what the builders make now."""
    from devkit.manifests import CHART_DASHBOARDS, REGENERATE, render_chart_dashboards

    committed = {path.name: path.read_text() for path in CHART_DASHBOARDS.glob("*.json")}
    assert committed == render_chart_dashboards(), (
        f"the chart's dashboards are stale: regenerate them with `.venv/bin/{REGENERATE}`"
    )


def test_chart_ships_one_config_map_per_dashboard() -> None:
    from devkit.operator_process import render_chart

    rendered = [o for o in render_chart("jm", "monitoring") if o["kind"] == "ConfigMap"]
    by_key = {key: (o, text) for o in rendered for key, text in o["data"].items()}
    models = {file_name(m): m for m in shared_dashboards().values()}
    assert set(by_key) == set(models)
    for key, (config_map, text) in by_key.items():
        assert json.loads(text) == models[key]
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Jewelry"}
        assert config_map["metadata"]["namespace"] == "monitoring"
    custom = render_chart(
        "jm",
        "monitoring",
        {"dashboards.namespace": "grafana", "dashboards.labels": {"dash": "yes"}},
    )
    moved = [o for o in custom if o["kind"] == "ConfigMap"]
    assert {o["metadata"]["namespace"] for o in moved} == {"grafana"}
    assert all(o["metadata"]["labels"]["dash"] == "yes" for o in moved)
    off = render_chart("jm", "monitoring", {"dashboards.enabled": False})
    assert not [o for o in off if o["kind"] == "ConfigMap"]


# --- Re-measuring the exporter names ------------------------------------------------------


def _scrape_names(url: str, timeout: float = 20) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                text = response.read().decode()
            return {
                re.split(r"[{ ]", line, maxsplit=1)[0]
                for line in text.splitlines()
                if line and not line.startswith("#")
            }
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _scrape_exporter(port: int, ready: str) -> set[str]:
    """The names an exporter on ``port`` serves once ``ready`` is among them (it reached its
    server), or after 30 s."""
    deadline = time.monotonic() + 30
    while True:
        names = _scrape_names(f"http://127.0.0.1:{port}/metrics")
        if ready in names or time.monotonic() > deadline:
            return names
        time.sleep(0.5)


def _exporter_binary(exporter: str) -> str:
    from devkit import prometheus as prom

    return {
        "postgres": prom.POSTGRES_EXPORTER,
        "redis": prom.REDIS_EXPORTER,
        "nginx": prom.NGINX_EXPORTER,
        "node": prom.NODE_EXPORTER,
    }[exporter]


@pytest.mark.services
@pytest.mark.parametrize("exporter", sorted(EXPORTER_METRICS))
def test_exporters_really_export_the_inventoried_names(exporter: str) -> None:
    from devkit import prometheus as prom
    from devkit.services import nginx_service, postgres_service, redis_service

    binary = _exporter_binary(exporter)
    if not shutil.which(binary):
        pytest.fail(f"{binary} is not installed: run tests/toolchain/setup")
    with ExitStack() as stack:
        if exporter == "postgres":
            pg = stack.enter_context(postgres_service())
            running = stack.enter_context(prom.postgres_exporter(f"{pg.dsn}?sslmode=disable"))
            ready = "pg_settings_max_connections"
        elif exporter == "redis":
            redis = stack.enter_context(redis_service())
            running = stack.enter_context(prom.redis_exporter(redis.url))
            ready = "redis_memory_max_bytes"
        elif exporter == "nginx":
            nginx = stack.enter_context(
                nginx_service(
                    lambda port, _: (
                        f"server {{ listen 127.0.0.1:{port}; "
                        "location /stub_status { stub_status; } }"
                    )
                )
            )
            running = stack.enter_context(prom.nginx_exporter(f"{nginx.url}/stub_status"))
            ready = "nginx_connections_accepted"
        else:
            running = stack.enter_context(prom.node_exporter())
            ready = "node_cpu_seconds_total"
        names = _scrape_exporter(running.port, ready)
    assert EXPORTER_METRICS[exporter] - names == set()


def _cluster_variable(model: dict[str, Any]) -> dict[str, Any]:
    (variable,) = [v for v in model["templating"]["list"] if v["name"] == "cluster"]
    return variable


def test_every_query_is_scoped_to_the_chosen_cluster() -> None:
    """A global view (Thanos, Mimir, federation) holds several clusters' series of the same
    namespace and job: every panel and picker filters by the cluster variable, hidden unless
    the resource (or the chart) says its data source holds several clusters."""
    for models in (dashboards(owner(FULL_SPEC)), shared_dashboards()):
        for model in models.values():
            assert _cluster_variable(model)["hide"] == 2
            queries = [q for q in _all_exprs(model) if "{" in q]
            assert queries
            for query in queries:
                for matchers in re.findall(r"\{([^{}]*)\}", query):
                    if "=" in matchers:
                        assert 'cluster="$cluster"' in matchers.split(","), query
    shown = dashboards(owner({**FULL_SPEC, "dashboards": {"multiCluster": True}}))
    assert {_cluster_variable(model)["hide"] for model in shown.values()} == {0}


def _all_exprs(model: Any) -> list[str]:
    """Every PromQL of a dashboard: panel queries and the variables' (but the cluster's)."""
    found = [
        target["expr"]
        for panel in model["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    variables = model["templating"]["list"]
    return found + [
        v["query"] for v in variables if v["type"] == "query" and v["name"] != "cluster"
    ]
