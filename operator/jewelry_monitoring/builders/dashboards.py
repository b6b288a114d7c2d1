"""Grafana dashboards, built with the Grafana Foundation SDK: the chart's and a CR's own.

Four dashboards (Django application, database, cache, system) are described as data: each
is a list of sections, each section a list of panels, each panel a handful of PromQL
templates. One function turns that table into SDK builders, so every panel gets the same
datasource variable, scoping and layout rules. A ``Scope`` decides what the templates select:

* ``shared_scope``: the chart ships one set for every CR (``jm-dev manifests`` writes it to
  charts/jewelry-monitoring/dashboards/); the viewer picks namespace and jobs with Grafana
  variables, as django-mixin does. 500 CRs still make four dashboards.
* ``cr_scope``: a CR's own set (opt-in, ``spec.dashboards.enabled``), scoped to its jobs
  exactly like the alert rules (``rules.selector``), with uids and file names unique per CR.

Why these choices:

* Queries always carry namespace and job matchers, so a dashboard never mixes two shops
  living in one Prometheus.
* Where the PrometheusRule records a series (request rate, 5xx ratio, latency quantiles,
  cache hit ratio, DB query rate), panels read the recorded series: cheaper, and what you see
  is exactly what the alerts see.
* Sections of an exporter appear only when that exporter is enabled, so no panel is ever
  "No data" because of configuration.
* The Django pods' CPU and memory come from the kubelet's cAdvisor metrics joined with the
  app job's ``up`` series on (namespace, pod): under gunicorn the app exports no
  ``process_*`` metrics (prometheus_client's multiprocess mode does not merge them, see
  app/METRICS.md).
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal, get_args

from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk_dashboard
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from jewelry_monitoring.builders import rules
from jewelry_monitoring.builders.common import APP_COMPONENT, Owner
from jewelry_monitoring.builders.exporters import component
from jewelry_monitoring.spec import EXPORTER_NAMES, SLOSpec

DATASOURCE_VARIABLE = "datasource"
RATE = "$__rate_interval"
UID_MAX = 40

# Requirements a section can have besides a component name ("app" or an exporter).
ALWAYS = "always"
# The node exporter is the cluster's (a chart option, or kube-prometheus-stack's), so only the
# chart's shared dashboards show nodes.
NODE = "node"
SLO_AVAILABILITY = "slo-availability"
SLO_LATENCY = "slo-latency"


@dataclass(frozen=True)
class PanelDef:
    """One panel: PromQL templates with a ``{sel}`` placeholder for the component's matchers.

    ``{sel}`` expands to matchers without braces (``namespace="…",job="…"``), so templates
    write ``metric{{sel}}`` or ``metric{{sel},mode="idle"}``; Grafana's ``$__rate_interval``
    stays for Grafana to fill in.
    """

    title: str
    queries: tuple[tuple[str, str], ...]  # (expr template, legend format)
    unit: str = "short"
    kind: Literal["timeseries", "stat"] = "timeseries"
    component: str = rules.APP
    width: int = 12
    description: str = ""


@dataclass(frozen=True)
class SectionDef:
    """A row of panels shown only when ``requires`` is available for the CR."""

    title: str
    requires: str
    panels: tuple[PanelDef, ...]


@dataclass(frozen=True)
class DashboardDef:
    slug: str
    title: str
    tags: tuple[str, ...]
    sections: tuple[SectionDef, ...]


def _q(expr: str, legend: str = "") -> tuple[str, str]:
    return (expr, legend)


def _stat(title: str, expr: str, unit: str, component: str = rules.APP) -> PanelDef:
    return PanelDef(title, (_q(expr),), unit, "stat", component, width=6)


_LAT = rules.LATENCY_QUANTILES
_HTTP_BUCKET = f"{rules.HTTP_LATENCY}_bucket"
_DB_BUCKET = f"{rules.DB_QUERY_DURATION}_bucket"
_CPU = "container_cpu_usage_seconds_total"
_MEM = "container_memory_working_set_bytes"
# cAdvisor series of the pods that are targets of the app job (prometheus-operator puts the
# ``pod`` label on every target).
_APP_PODS = "and on (cluster, namespace, pod) up{{sel}}"
# Every query's first matcher (see Scope): the cluster chosen, "" where series have none.
CLUSTER_VARIABLE = "cluster"
CLUSTER = f'cluster="${CLUSTER_VARIABLE}"'
_FS = 'fstype!~"tmpfs|ramfs|squashfs|overlay"'


def _slo_section(kind: str, requires: str) -> SectionDef:
    """Error ratio of one SLI over every recorded window, next to the allowed share.

    The recorded windows follow the CR's SLO window (``rules.slo_windows``), so the query
    picks all of them by name and shows the window as the legend: one query for every CR.
    """
    record = rules.slo_error_ratio_record(kind, "")
    return SectionDef(
        f"SLO: {kind}",
        requires,
        (
            PanelDef(
                f"{kind.capitalize()} SLI: share of bad requests",
                (
                    _q(
                        f'label_replace({{__name__=~"{record}.+",{{sel}}}}, '
                        f'"window", "$1", "__name__", ".+:ratio_rate(.+)")',
                        "{{window}}",
                    ),
                ),
                "percentunit",
                width=24,
                description="Burn-rate alerts fire when both windows of a pair exceed "
                "factor x error budget.",
            ),
        ),
    )


# The ratio over the whole SLO window, whichever window a resource chose.
_SLO_WINDOWS = "|".join(get_args(SLOSpec.model_fields["window"].annotation))


def _budget_section(kind: str, requires: str) -> SectionDef:
    """One SLO's state against its objective: what the SLO recording rules hold."""
    ratio = rules.slo_error_ratio_record(kind, "")
    budget = rules.slo_budget_remaining_record(kind)
    burn = rules.slo_burn_rate_record(kind, "")
    return SectionDef(
        f"{kind.capitalize()} SLO",
        requires,
        (
            _stat("Objective", f"{rules.slo_objective_record(kind)}{{{{sel}}}}", "percentunit"),
            _stat(
                "SLI over the SLO window",
                f'1 - {{__name__=~"{ratio}({_SLO_WINDOWS})",{{sel}}}}',
                "percentunit",
            ),
            _stat("Error budget left", f"{budget}{{{{sel}}}}", "percentunit"),
            _stat("Burn rate now", f'{{__name__=~"{burn}.+",{{sel}}}}', "short"),
            PanelDef(
                "Error budget left over time",
                (_q(f"{budget}{{{{sel}}}}", "budget left"),),
                "percentunit",
                description="1 is the whole budget of the SLO window, 0 spent, below 0 overspent.",
            ),
            PanelDef(
                "Burn rate",
                (
                    _q(
                        f'label_replace({{__name__=~"{burn}.+",{{sel}}}}, '
                        f'"window", "$1", "__name__", ".+:ratio_rate(.+)")',
                        "{{window}}",
                    ),
                ),
                "short",
                description="1 spends exactly the budget over the SLO window; the page "
                "alerts fire at 14.4 and 6 (over 1h and 6h of a 30-day SLO).",
            ),
        ),
    )


DASHBOARDS: tuple[DashboardDef, ...] = (
    DashboardDef(
        "django",
        "Django application",
        ("django", "http"),
        (
            SectionDef(
                "Overview",
                rules.APP,
                (
                    _stat("Requests/s", f"{rules.REQUESTS_RATE}{{{{sel}}}}", "reqps"),
                    _stat("5xx ratio", f"{rules.RESPONSES_5XX_RATIO}{{{{sel}}}}", "percentunit"),
                    _stat("p95 latency", f"{_LAT[0.95]}{{{{sel}}}}", "s"),
                    _stat("Targets up", "sum(up{{sel}})", "short"),
                ),
            ),
            SectionDef(
                "Traffic",
                rules.APP,
                (
                    PanelDef(
                        "Requests by method",
                        (
                            _q(
                                f"sum by (method) (rate({rules.HTTP_REQUESTS}{{{{sel}}}}[{RATE}]))",
                                "{{method}}",
                            ),
                        ),
                        "reqps",
                    ),
                    PanelDef(
                        "Responses by status",
                        (
                            _q(
                                "sum by (status) "
                                f"(rate({rules.HTTP_RESPONSES}{{{{sel}}}}[{RATE}]))",
                                "{{status}}",
                            ),
                        ),
                        "reqps",
                    ),
                    PanelDef(
                        "Top 10 views by request rate",
                        (
                            _q(
                                "topk(10, sum by (view) (rate("
                                "django_http_requests_total_by_view_transport_method_total"
                                f"{{{{sel}}}}[{RATE}])))",
                                "{{view}}",
                            ),
                        ),
                        "reqps",
                        width=24,
                    ),
                ),
            ),
            SectionDef(
                "Latency",
                rules.APP,
                (
                    PanelDef(
                        "Request latency quantiles",
                        tuple(
                            _q(f"{record}{{{{sel}}}}", f"p{round(q * 100)}")
                            for q, record in _LAT.items()
                        ),
                        "s",
                    ),
                    PanelDef(
                        "p95 latency by view",
                        (
                            _q(
                                "topk(10, histogram_quantile(0.95, sum by (view, le) "
                                f"(rate({_HTTP_BUCKET}{{{{sel}}}}[{RATE}]))))",
                                "{{view}}",
                            ),
                        ),
                        "s",
                    ),
                ),
            ),
            SectionDef(
                "Errors",
                rules.APP,
                (
                    PanelDef(
                        "5xx ratio",
                        (_q(f"{rules.RESPONSES_5XX_RATIO}{{{{sel}}}}", "5xx"),),
                        "percentunit",
                        width=8,
                    ),
                    PanelDef(
                        "5xx by view",
                        (
                            _q(
                                "sum by (view, status) (rate("
                                "django_http_responses_total_by_status_view_method_total"
                                f'{{{{sel}},status=~"5.."}}[{RATE}]))',
                                "{{view}} {{status}}",
                            ),
                        ),
                        "reqps",
                        width=8,
                    ),
                    PanelDef(
                        "Unhandled exceptions by type",
                        (
                            _q(
                                "sum by (type) (rate("
                                f"django_http_exceptions_total_by_type_total{{{{sel}}}}[{RATE}]))",
                                "{{type}}",
                            ),
                        ),
                        "reqps",
                        width=8,
                    ),
                ),
            ),
            _slo_section("availability", SLO_AVAILABILITY),
            _slo_section("latency", SLO_LATENCY),
            SectionDef(
                "Nginx",
                "nginx",
                (
                    _stat("Nginx up", "min(nginx_up{{sel}})", "short", "nginx"),
                    PanelDef(
                        "Nginx requests/s",
                        (_q(f"sum(rate(nginx_http_requests_total{{{{sel}}}}[{RATE}]))", "req/s"),),
                        "reqps",
                        component="nginx",
                        width=6,
                    ),
                    PanelDef(
                        "Nginx connections",
                        tuple(
                            _q(f"sum(nginx_connections_{state}{{{{sel}}}})", state)
                            for state in ("active", "reading", "writing", "waiting")
                        ),
                        component="nginx",
                        width=6,
                    ),
                    PanelDef(
                        "Accepted vs handled connections",
                        tuple(
                            _q(f"sum(rate(nginx_connections_{what}{{{{sel}}}}[{RATE}]))", what)
                            for what in ("accepted", "handled")
                        ),
                        "ops",
                        component="nginx",
                        width=6,
                    ),
                ),
            ),
            SectionDef(
                "Celery",
                "celery",
                (
                    PanelDef(
                        "Task outcomes",
                        tuple(
                            _q(
                                f"sum(rate(celery_task_{outcome}_total{{{{sel}}}}[{RATE}]))",
                                outcome,
                            )
                            for outcome in ("succeeded", "failed", "retried", "rejected")
                        ),
                        "ops",
                        component="celery",
                        width=8,
                    ),
                    PanelDef(
                        "Queue length",
                        (
                            _q(
                                "sum by (queue_name) (celery_queue_length{{sel}})",
                                "{{queue_name}}",
                            ),
                        ),
                        component="celery",
                        width=8,
                    ),
                    PanelDef(
                        "Workers up / active tasks",
                        (
                            _q("sum(celery_worker_up{{sel}})", "workers up"),
                            _q("sum(celery_worker_tasks_active{{sel}})", "active tasks"),
                        ),
                        component="celery",
                        width=8,
                    ),
                ),
            ),
        ),
    ),
    DashboardDef(
        "database",
        "Database",
        ("database", "postgresql"),
        (
            SectionDef(
                "Django ORM",
                rules.APP,
                (
                    PanelDef(
                        "Queries/s",
                        (
                            _q(f"{rules.DB_QUERIES_RATE}{{{{sel}}}}", "all"),
                            _q(
                                f"sum(rate(django_db_execute_many_total{{{{sel}}}}[{RATE}]))",
                                "execute_many",
                            ),
                        ),
                        "ops",
                    ),
                    PanelDef(
                        "Query duration",
                        (
                            _q(
                                "histogram_quantile(0.5, sum by (le) "
                                f"(rate({_DB_BUCKET}{{{{sel}}}}[{RATE}])))",
                                "p50",
                            ),
                            _q(f"{rules.DB_DURATION_P95}{{{{sel}}}}", "p95"),
                            _q(
                                "histogram_quantile(0.99, sum by (le) "
                                f"(rate({_DB_BUCKET}{{{{sel}}}}[{RATE}])))",
                                "p99",
                            ),
                        ),
                        "s",
                    ),
                    PanelDef(
                        "Errors by type",
                        (
                            _q(
                                "sum by (alias, type) "
                                f"(rate(django_db_errors_total{{{{sel}}}}[{RATE}]))",
                                "{{alias}} {{type}}",
                            ),
                        ),
                        "ops",
                        width=8,
                    ),
                    PanelDef(
                        "New connections/s",
                        (
                            _q(
                                "sum by (alias) "
                                f"(rate(django_db_new_connections_total{{{{sel}}}}[{RATE}]))",
                                "{{alias}}",
                            ),
                        ),
                        "ops",
                        width=8,
                    ),
                    PanelDef(
                        "Unapplied migrations",
                        (
                            _q(
                                "max by (connection) (django_migrations_unapplied_total{{sel}})",
                                "{{connection}}",
                            ),
                        ),
                        width=8,
                    ),
                    PanelDef(
                        "Model writes/s",
                        tuple(
                            _q(
                                f"sum by (model) (rate(django_model_{op}_total"
                                f"{{{{sel}}}}[{RATE}]))",
                                f"{{{{model}}}} {op}",
                            )
                            for op in ("inserts", "updates", "deletes")
                        ),
                        "ops",
                        width=24,
                    ),
                ),
            ),
            SectionDef(
                "PostgreSQL",
                "postgres",
                (
                    _stat("PostgreSQL up", "min(pg_up{{sel}})", "short", "postgres"),
                    _stat(
                        "Connections used",
                        "sum(pg_stat_database_numbackends{{sel}}) / "
                        "max(pg_settings_max_connections{{sel}})",
                        "percentunit",
                        "postgres",
                    ),
                    PanelDef(
                        "Connections vs max_connections",
                        (
                            _q("sum(pg_stat_database_numbackends{{sel}})", "connections"),
                            _q("max(pg_settings_max_connections{{sel}})", "max_connections"),
                        ),
                        component="postgres",
                    ),
                    PanelDef(
                        "Transactions/s",
                        tuple(
                            _q(
                                f"sum by (datname) (rate(pg_stat_database_xact_{what}"
                                f"{{{{sel}}}}[{RATE}]))",
                                f"{{{{datname}}}} {what}",
                            )
                            for what in ("commit", "rollback")
                        ),
                        "ops",
                        component="postgres",
                        width=24,
                    ),
                    PanelDef(
                        "Buffer cache hit ratio",
                        (
                            _q(
                                f"sum(rate(pg_stat_database_blks_hit{{{{sel}}}}[{RATE}])) / "
                                f"(sum(rate(pg_stat_database_blks_hit{{{{sel}}}}[{RATE}])) + "
                                f"sum(rate(pg_stat_database_blks_read{{{{sel}}}}[{RATE}])))",
                                "hit ratio",
                            ),
                        ),
                        "percentunit",
                        component="postgres",
                        width=8,
                    ),
                    PanelDef(
                        "Deadlocks",
                        (
                            _q(
                                "sum by (datname) "
                                f"(increase(pg_stat_database_deadlocks{{{{sel}}}}[{RATE}]))",
                                "{{datname}}",
                            ),
                        ),
                        component="postgres",
                        width=8,
                    ),
                    PanelDef(
                        "Database size",
                        (_q("sum by (datname) (pg_database_size_bytes{{sel}})", "{{datname}}"),),
                        "bytes",
                        component="postgres",
                        width=8,
                    ),
                ),
            ),
        ),
    ),
    DashboardDef(
        "cache",
        "Cache",
        ("cache", "redis"),
        (
            SectionDef(
                "Django cache",
                rules.APP,
                (
                    PanelDef(
                        "Hit ratio",
                        (_q(f"{rules.CACHE_HIT_RATIO}{{{{sel}}}}", "{{backend}}"),),
                        "percentunit",
                    ),
                    PanelDef(
                        "Operations/s",
                        (
                            _q(f"{rules.CACHE_GETS_RATE}{{{{sel}}}}", "{{backend}} get"),
                            *(
                                _q(
                                    f"sum by (backend) (rate(django_cache_{op}_total"
                                    f"{{{{sel}}}}[{RATE}]))",
                                    f"{{{{backend}}}} {op}",
                                )
                                for op in ("set", "delete")
                            ),
                        ),
                        "ops",
                    ),
                    PanelDef(
                        "Hits vs misses",
                        tuple(
                            _q(
                                f"sum by (backend) (rate(django_cache_get_{what}_total"
                                f"{{{{sel}}}}[{RATE}]))",
                                f"{{{{backend}}}} {what}",
                            )
                            for what in ("hits", "misses")
                        ),
                        "ops",
                        width=24,
                    ),
                ),
            ),
            SectionDef(
                "Redis",
                "redis",
                (
                    _stat("Redis up", "min(redis_up{{sel}})", "short", "redis"),
                    _stat(
                        "Memory used of maxmemory",
                        "sum(redis_memory_used_bytes{{sel}}) / "
                        "sum(redis_memory_max_bytes{{sel}} > 0)",
                        "percentunit",
                        "redis",
                    ),
                    PanelDef(
                        "Memory",
                        (
                            _q("sum(redis_memory_used_bytes{{sel}})", "used"),
                            _q("sum(redis_memory_max_bytes{{sel}})", "maxmemory"),
                        ),
                        "bytes",
                        component="redis",
                    ),
                    PanelDef(
                        "Clients",
                        (
                            _q("sum(redis_connected_clients{{sel}})", "connected"),
                            _q("sum(redis_blocked_clients{{sel}})", "blocked"),
                            _q("max(redis_config_maxclients{{sel}})", "maxclients"),
                            _q(
                                f"sum(increase(redis_rejected_connections_total{{{{sel}}}}[{RATE}]))",
                                "rejected",
                            ),
                        ),
                        component="redis",
                        width=24,
                    ),
                    PanelDef(
                        "Commands/s",
                        (_q(f"sum(rate(redis_commands_total{{{{sel}}}}[{RATE}]))", "commands"),),
                        "ops",
                        component="redis",
                        width=8,
                    ),
                    PanelDef(
                        "Keyspace hits vs misses",
                        tuple(
                            _q(
                                f"sum(rate(redis_keyspace_{what}_total{{{{sel}}}}[{RATE}]))",
                                what,
                            )
                            for what in ("hits", "misses")
                        ),
                        "ops",
                        component="redis",
                        width=8,
                    ),
                    PanelDef(
                        "Evicted keys/s",
                        (
                            _q(
                                f"sum(rate(redis_evicted_keys_total{{{{sel}}}}[{RATE}]))",
                                "evicted",
                            ),
                        ),
                        "ops",
                        component="redis",
                        width=8,
                    ),
                ),
            ),
        ),
    ),
    DashboardDef(
        "system",
        "System",
        ("system", "node"),
        (
            SectionDef(
                "Scrape targets",
                ALWAYS,
                (
                    PanelDef(
                        "Targets up by job",
                        (_q("sum by (job) (up{{sel}})", "{{job}}"),),
                        component="all",
                        width=8,
                    ),
                    PanelDef(
                        "Scrape duration",
                        (_q("max by (job) (scrape_duration_seconds{{sel}})", "{{job}}"),),
                        "s",
                        component="all",
                        width=8,
                    ),
                    PanelDef(
                        "Firing alerts",
                        (
                            _q(
                                'sum by (alertname, severity) (ALERTS{{sel},alertstate="firing"})',
                                "{{alertname}} ({{severity}})",
                            ),
                        ),
                        component="all",
                        width=8,
                        description="Alerts of this JewelryMonitoring's PrometheusRule.",
                    ),
                    PanelDef(
                        "Samples per scrape, share of sampleLimit",
                        (
                            _q(
                                f"max by (job, instance) ({rules.SAMPLE_LIMIT_RATIO}{{{{sel}}}})",
                                "{{job}} {{instance}}",
                            ),
                        ),
                        "percentunit",
                        component="all",
                        width=24,
                        description="Cardinality guard: past 100% Prometheus refuses the "
                        "whole scrape (spec scrapeLimits.sampleLimit); TargetNearSampleLimit "
                        "warns at 80%.",
                    ),
                ),
            ),
            SectionDef(
                "Django pods",
                rules.APP,
                (
                    PanelDef(
                        "CPU by pod",
                        (
                            _q(
                                f'sum by (pod) (rate({_CPU}{{{CLUSTER},namespace="{{namespace}}",'
                                f'container!="",container!="POD"}}[{RATE}]) {_APP_PODS})',
                                "{{pod}}",
                            ),
                        ),
                        "short",
                        description="cAdvisor CPU seconds/s of the pods the app job scrapes.",
                    ),
                    PanelDef(
                        "Memory by pod",
                        (
                            _q(
                                f'sum by (pod) ({_MEM}{{{CLUSTER},namespace="{{namespace}}",'
                                f'container!="",container!="POD"}} {_APP_PODS})',
                                "{{pod}}",
                            ),
                        ),
                        "bytes",
                        description="cAdvisor working set of the pods the app job scrapes.",
                    ),
                ),
            ),
            SectionDef(
                "Nodes",
                NODE,
                (
                    PanelDef(
                        "CPU usage",
                        (
                            _q(
                                "1 - avg by (instance) (rate(node_cpu_seconds_total"
                                f'{{{{sel}},mode="idle"}}[{RATE}]))',
                                "{{instance}}",
                            ),
                        ),
                        "percentunit",
                        component=NODE,
                    ),
                    PanelDef(
                        "Memory used",
                        (
                            _q(
                                "1 - node_memory_MemAvailable_bytes{{sel}}"
                                " / node_memory_MemTotal_bytes{{sel}}",
                                "{{instance}}",
                            ),
                        ),
                        "percentunit",
                        component=NODE,
                    ),
                    PanelDef(
                        "Filesystem used",
                        (
                            _q(
                                f"1 - node_filesystem_avail_bytes{{{{sel}},{_FS}}}"
                                f" / node_filesystem_size_bytes{{{{sel}},{_FS}}}",
                                "{{instance}} {{mountpoint}}",
                            ),
                        ),
                        "percentunit",
                        component=NODE,
                    ),
                    PanelDef(
                        "Network traffic",
                        tuple(
                            _q(
                                f"sum by (instance) (rate(node_network_{way}_bytes_total"
                                f'{{{{sel}},device!="lo"}}[{RATE}]))',
                                f"{{{{instance}}}} {way}",
                            )
                            for way in ("receive", "transmit")
                        ),
                        "Bps",
                        component=NODE,
                    ),
                    PanelDef(
                        "Disk I/O",
                        tuple(
                            _q(
                                f"sum by (instance) (rate(node_disk_{way}_bytes_total"
                                f"{{{{sel}}}}[{RATE}]))",
                                f"{{{{instance}}}} {way}",
                            )
                            for way in ("read", "written")
                        ),
                        "Bps",
                        component=NODE,
                    ),
                    PanelDef(
                        "Load average (1m)",
                        (_q("node_load1{{sel}}", "{{instance}}"),),
                        component=NODE,
                    ),
                ),
            ),
        ),
    ),
    DashboardDef(
        "slo",
        "SLOs and error budgets",
        ("slo",),
        (
            _budget_section("availability", SLO_AVAILABILITY),
            _budget_section("latency", SLO_LATENCY),
        ),
    ),
)


# Components whose job a viewer picks in a shared dashboard, with the variable holding it.
JOB_VARIABLES = {
    rules.APP: "job",
    **{exporter: f"{exporter}_job" for exporter in EXPORTER_NAMES},
    NODE: "node_job",
}
NAMESPACE_VARIABLE = "namespace"
# The job names of the operator's Services end so (``<cr>-app-metrics``, ...).
_JOB_SUFFIXES = "|".join([APP_COMPONENT, *(component(exporter) for exporter in EXPORTER_NAMES)])


@dataclass(frozen=True)
class Scope:
    """What a set of dashboards looks at: one CR's scrape jobs, or whatever the viewer picks.

    ``matchers`` maps a component (or "all") to the ``{sel}`` matchers of its panels,
    ``namespace`` replaces ``{namespace}``, ``available`` lists the sections to show, and
    ``pick_jobs`` adds the Grafana variables (namespace, one job per component) to choose from.
    Every matcher begins with ``cluster="$cluster"``: the variable lists the ``cluster`` label
    of a global view (Thanos, Mimir, federation); where no series has one it is empty, and
    ``cluster=""`` matches exactly the series without the label.
    """

    matchers: dict[str, str]
    namespace: str
    available: frozenset[str]
    uids: dict[str, str]  # dashboard slug -> uid
    title_suffix: str
    tag: str
    description: str
    pick_jobs: bool
    # The ``cluster`` variable's query, and whether it is shown (several clusters' series in
    # one data source) or hidden (one cluster: it is empty, or has the one value).
    cluster_query: str
    show_cluster: bool


def dashboard_uid(owner: Owner, slug: str) -> str:
    """Stable per (namespace, CR, dashboard), so links and bookmarks survive re-creation."""
    digest = hashlib.sha256(f"{owner.namespace}/{owner.name}/{slug}".encode()).hexdigest()
    uid = f"jewelry-{slug}-{digest[:16]}"
    assert len(uid) <= UID_MAX
    return uid


def _components(owner: Owner) -> list[str]:
    """The scrape jobs this CR creates: the app's (unless disabled) and each exporter's."""
    spec = owner.spec
    return [*([rules.APP] if spec.app.enabled else []), *spec.exporters.enabled()]


def _available(owner: Owner) -> frozenset[str]:
    spec = owner.spec
    components = _components(owner)
    available = {*components, *([ALWAYS] if components else [])}
    if spec.app.enabled:
        if spec.slos.availability is not None:
            available.add(SLO_AVAILABILITY)
        if spec.slos.latency is not None:
            available.add(SLO_LATENCY)
    return frozenset(available)


def cr_scope(owner: Owner) -> Scope:
    """The dashboards of one CR: its own jobs, its own uids and tag, its sections only."""
    components = _components(owner)
    matchers = {
        component: f"{CLUSTER},{rules.selector(owner, component)}" for component in components
    }
    jobs = "|".join(rules.component_job(owner, component) for component in components)
    matchers["all"] = f'{CLUSTER},namespace="{owner.namespace}",job=~"{jobs}"'
    where = f"{owner.namespace}/{owner.name}"
    return Scope(
        matchers=matchers,
        namespace=owner.namespace,
        available=_available(owner),
        uids={d.slug: dashboard_uid(owner, d.slug) for d in DASHBOARDS},
        title_suffix=f" ({where})",
        tag=f"jewelry:{where}",
        description=f"Generated by jewelry-monitoring for JewelryMonitoring {where}; "
        "edits are overwritten.",
        pick_jobs=False,
        cluster_query=f'label_values(up{{namespace="{owner.namespace}",job=~"{jobs}"}}, cluster)',
        show_cluster=owner.spec.dashboards.multi_cluster,
    )


def shared_scope() -> Scope:
    """The chart's dashboards: every section, for the namespace and jobs a viewer picks."""
    matchers = {
        component: f'{CLUSTER},namespace="${NAMESPACE_VARIABLE}",job="${variable}"'
        for component, variable in JOB_VARIABLES.items()
    }
    # The node exporter is the cluster's (the chart's or kube-prometheus-stack's), not in
    # the app's namespace.
    matchers[NODE] = f'{CLUSTER},job="${JOB_VARIABLES[NODE]}"'
    matchers["all"] = f'{CLUSTER},namespace="${NAMESPACE_VARIABLE}"'
    return Scope(
        matchers=matchers,
        namespace=f"${NAMESPACE_VARIABLE}",
        available=frozenset(
            {ALWAYS, rules.APP, *EXPORTER_NAMES, NODE, SLO_AVAILABILITY, SLO_LATENCY}
        ),
        uids={d.slug: f"jewelry-{d.slug}" for d in DASHBOARDS},
        title_suffix="",
        tag="jewelry",
        description="Shipped with the jewelry-monitoring chart for every JewelryMonitoring: "
        "pick the namespace and jobs above. Generated; edits are overwritten.",
        pick_jobs=True,
        cluster_query=f'label_values(up{{job=~".+-({_JOB_SUFFIXES})"}}, cluster)',
        # Hidden; the chart shows it with dashboards.multiCluster (templates/dashboards.yaml).
        show_cluster=False,
    )


def panel_exprs(scope: Scope, panel: PanelDef) -> list[tuple[str, str]]:
    """A panel's PromQL with the scope's matchers filled in, as (expr, legend) pairs."""
    sel = scope.matchers[panel.component]
    return [
        (expr.replace("{sel}", sel).replace("{namespace}", scope.namespace), legend)
        for expr, legend in panel.queries
    ]


def _datasource() -> DataSourceRef:
    return DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")


def _panel(scope: Scope, panel: PanelDef, panel_id: int) -> Any:
    datasource = _datasource()
    builder: Any = (
        stat.Panel()
        .reduce_options(sdk_common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(common_models.BigValueGraphMode.NONE)
        .color_mode(common_models.BigValueColorMode.VALUE)
        if panel.kind == "stat"
        else timeseries.Panel()
        .legend(
            sdk_common.VizLegendOptions()
            .display_mode(common_models.LegendDisplayMode.LIST)
            .placement(common_models.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            sdk_common.VizTooltipOptions()
            .mode(common_models.TooltipDisplayMode.MULTI)
            .sort(common_models.SortOrder.DESCENDING)
        )
    )
    builder = (
        builder.id(panel_id)
        .title(panel.title)
        .datasource(datasource)
        .unit(panel.unit)
        .span(panel.width)
        .height(4 if panel.kind == "stat" else 8)
    )
    if panel.description:
        builder = builder.description(panel.description)
    for index, (expr, legend) in enumerate(panel_exprs(scope, panel)):
        query = prometheus.Dataquery().expr(expr).ref_id(chr(ord("A") + index))
        query = query.datasource(datasource)
        if legend:
            query = query.legend_format(legend)
        if panel.kind == "stat":
            query = query.instant()
        builder = builder.with_target(query)
    return builder


def _job_pickers(sections: list[SectionDef]) -> list[Any]:
    """Grafana variables for the namespace and the job of each component the panels read.

    Jobs are listed from ``up`` by the Service names the operator gives them
    (``<cr>-app-metrics``, ``<cr>-postgres-exporter``, …); the node exporter's from any
    series only a node exporter exports.
    """
    used = {panel.component for section in sections for panel in section.panels}
    pickers = [
        _picker(
            NAMESPACE_VARIABLE,
            "Namespace",
            f'label_values(up{{{CLUSTER},job=~".+-({_JOB_SUFFIXES})"}}, namespace)',
        )
    ]
    for part, variable in JOB_VARIABLES.items():
        if part not in used:
            continue
        if part == NODE:
            query = f"label_values(node_load1{{{CLUSTER}}}, job)"
        else:
            suffix = APP_COMPONENT if part == rules.APP else component(part)
            query = (
                f'label_values(up{{{CLUSTER},namespace="${NAMESPACE_VARIABLE}",'
                f'job=~".+-{suffix}"}}, job)'
            )
        title = "Django job" if part == rules.APP else f"{part.capitalize()} exporter job"
        pickers.append(_picker(variable, title, query))
    return pickers


def _picker(name: str, label: str, query: str) -> Any:
    """A variable listing the values ``query`` finds, refreshed with the time range."""
    return (
        sdk_dashboard.QueryVariable(name)
        .label(label)
        .datasource(_datasource())
        .query(query)
        .refresh(dashboard_models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dashboard_models.VariableSort.ALPHABETICAL_ASC)
    )


def _cluster_picker(scope: Scope) -> Any:
    """The ``cluster`` variable, as kube-prometheus-stack's multi-cluster mode has it: shown
    when one data source holds several clusters, hidden otherwise."""
    hide = (
        dashboard_models.VariableHide.DONT_HIDE
        if scope.show_cluster
        else dashboard_models.VariableHide.HIDE_VARIABLE
    )
    return _picker(CLUSTER_VARIABLE, "Cluster", scope.cluster_query).hide(hide)


def _sections(scope: Scope, definition: DashboardDef) -> list[SectionDef]:
    return [s for s in definition.sections if s.requires in scope.available]


def _layout(
    sections: list[SectionDef],
) -> list[tuple[SectionDef, int, list[tuple[PanelDef, int]]]]:
    """Each section with its row's id and its panels' ids, numbered in order from 1: what the
    dashboard holds and what an alert's link names, computed once for both."""
    layout = []
    panel_id = 0
    for section in sections:
        row_id = panel_id = panel_id + 1
        panels = []
        for panel in section.panels:
            panel_id += 1
            panels.append((panel, panel_id))
        layout.append((section, row_id, panels))
    return layout


def _build(scope: Scope, definition: DashboardDef) -> dict[str, Any] | None:
    sections = _sections(scope, definition)
    if not sections:
        return None
    builder = (
        sdk_dashboard.Dashboard(f"Jewelry / {definition.title}{scope.title_suffix}")
        .uid(scope.uids[definition.slug])
        .tags(list(dict.fromkeys(["jewelry", *definition.tags, scope.tag])))
        .description(scope.description)
        .refresh("30s")
        .time("now-6h", "now")
        .readonly()
        # An empty list, not a missing one: Grafana adds its built-in annotation to it.
        .annotations([])
        .link(
            # The other dashboards of the same scope, found by the tag they share.
            sdk_dashboard.DashboardLink("Jewelry dashboards")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags([scope.tag])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .with_variable(
            sdk_dashboard.DatasourceVariable(DATASOURCE_VARIABLE)
            .label("Data source")
            .type("prometheus")
        )
    )
    builder = builder.with_variable(_cluster_picker(scope))
    if scope.pick_jobs:
        for variable in _job_pickers(sections):
            builder = builder.with_variable(variable)
    for section, row_id, panels in _layout(sections):
        builder = builder.with_row(sdk_dashboard.Row(section.title).id(row_id))
        for panel, panel_id in panels:
            builder = builder.with_panel(_panel(scope, panel, panel_id))
    # The SDK's models serialise through its JSONEncoder; a round trip gives plain dicts.
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return model


def _models(scope: Scope) -> dict[str, dict[str, Any]]:
    """Dashboard slug → Grafana dashboard JSON model, for the dashboards with something to show."""
    models = {definition.slug: _build(scope, definition) for definition in DASHBOARDS}
    return {slug: model for slug, model in models.items() if model is not None}


def file_name(model: dict[str, Any]) -> str:
    """The dashboard's file name for the Grafana sidecar: ``<uid>.json``.

    The sidecar names files after ConfigMap keys and by default puts every ConfigMap's files
    in one folder, so a key two CRs share makes them overwrite each other; uids are unique.
    """
    return f"{model['uid']}.json"


def dashboard_json(model: dict[str, Any], indent: int | None = None) -> str:
    """The text of a dashboard file: stable key order, so unchanged dashboards never rewrite.

    Compact unless ``indent`` is given (the chart's files, which people read): a CR's
    dashboards are read only by the Grafana sidecar, and compact JSON is 27 % smaller and
    written by json's C encoder, 4x faster than its indenting one (every reconcile renders
    them: issue 19's operator CPU)."""
    if indent is not None:
        return json.dumps(model, indent=indent, sort_keys=True)
    return json.dumps(model, separators=(",", ":"), sort_keys=True)


def dashboards(owner: Owner) -> dict[str, dict[str, Any]]:
    """A CR's own dashboards by slug; uids (and so file names) are unique per CR."""
    return _models(cr_scope(owner))


def shared_dashboards() -> dict[str, dict[str, Any]]:
    """The chart's dashboards by slug, for every CR at once (uid ``jewelry-<slug>``)."""
    return _models(shared_scope())


# --- Alerts linked to the panel that explains them ------------------------------------------

# Alert name -> (dashboard slug, section title, panel title): the panel an on-call engineer
# opens first. Every alert of ``rules.KNOWN_ALERTS`` has one (a test checks the panel reads
# the alert's metrics).
_TARGETS = ("system", "Scrape targets", "Targets up by job")
ALERT_PANELS: dict[str, tuple[str, str, str]] = {
    "DjangoTargetDown": _TARGETS,
    **{f"{title}ExporterDown": _TARGETS for title in ("Postgres", "Redis", "Nginx", "Celery")},
    "HighErrorRate": ("django", "Errors", "5xx ratio"),
    "SlowRequests": ("django", "Latency", "Request latency quantiles"),
    "DjangoUnhandledExceptions": ("django", "Errors", "Unhandled exceptions by type"),
    "DjangoDatabaseErrors": ("database", "Django ORM", "Errors by type"),
    "DjangoSlowDatabaseQueries": ("database", "Django ORM", "Query duration"),
    "DjangoCacheHitRatioLow": ("cache", "Django cache", "Hit ratio"),
    "DjangoUnappliedMigrations": ("database", "Django ORM", "Unapplied migrations"),
    "PostgresDown": ("database", "PostgreSQL", "PostgreSQL up"),
    "PostgresTooManyConnections": ("database", "PostgreSQL", "Connections vs max_connections"),
    "RedisDown": ("cache", "Redis", "Redis up"),
    "RedisMemoryNearLimit": ("cache", "Redis", "Memory"),
    "RedisRejectedConnections": ("cache", "Redis", "Clients"),
    "NginxDown": ("django", "Nginx", "Nginx up"),
    "NginxDroppedConnections": ("django", "Nginx", "Accepted vs handled connections"),
    "CeleryTaskFailures": ("django", "Celery", "Task outcomes"),
    "CeleryNoWorkers": ("django", "Celery", "Workers up / active tasks"),
    "CeleryQueueBacklog": ("django", "Celery", "Queue length"),
    rules.SLO_ALERTS["availability"]: (
        "django",
        "SLO: availability",
        "Availability SLI: share of bad requests",
    ),
    rules.SLO_ALERTS["latency"]: ("django", "SLO: latency", "Latency SLI: share of bad requests"),
    rules.SAMPLE_LIMIT_ALERT.name: (
        "system",
        "Scrape targets",
        "Samples per scrape, share of sampleLimit",
    ),
}
# Which component's job an alert is about, for the shared dashboards' job variable.
_ALERT_COMPONENTS = {
    **{alert.name: alert.component for alert in rules.CATALOG},
    **{name: rules.APP for name in rules.SLO_ALERTS.values()},
    # Any job's targets; the link presets the app's (the panel shows the namespace's jobs).
    rules.SAMPLE_LIMIT_ALERT.name: rules.APP,
}


def panel_ids(scope: Scope, slug: str) -> dict[tuple[str, str], int]:
    """(section title, panel title) -> panel id in one dashboard of ``scope``."""
    (definition,) = [d for d in DASHBOARDS if d.slug == slug]
    return {
        (section.title, panel.title): panel_id
        for section, _, panels in _layout(_sections(scope, definition))
        for panel, panel_id in panels
    }


def alert_dashboard_urls(owner: Owner) -> dict[str, str]:
    """Alert name -> Grafana URL of the panel explaining it; empty without ``grafanaUrl``.

    With the resource's own dashboards on, the link opens them; otherwise the chart's shared
    dashboards, with namespace and the alert's job chosen in their variables.
    """
    settings = owner.spec.dashboards
    if settings.grafana_url is None:
        return {}
    scope = cr_scope(owner) if settings.enabled else shared_scope()
    ids = {d.slug: panel_ids(scope, d.slug) for d in DASHBOARDS}
    urls = {}
    for alert, (slug, section, title) in ALERT_PANELS.items():
        panel_id = ids[slug].get((section, title))
        if panel_id is None:  # its section is not shown for this resource
            continue
        query = {"viewPanel": str(panel_id)}
        if scope.pick_jobs:
            component = _ALERT_COMPONENTS[alert]
            query[f"var-{NAMESPACE_VARIABLE}"] = owner.namespace
            query[f"var-{JOB_VARIABLES[component]}"] = rules.component_job(owner, component)
        base = settings.grafana_url.rstrip("/")
        urls[alert] = f"{base}/d/{scope.uids[slug]}?{urllib.parse.urlencode(query)}"
    return urls
