"""Grafana dashboards of one JewelryMonitoring, built with the Grafana Foundation SDK.

The four dashboards the design document recommends (Django application, database, cache,
system) are described as data: each is a list of sections, each section a list of panels,
each panel a handful of PromQL templates. One function turns that table into SDK builders, so
every panel gets the same datasource variable, scoping and layout rules.

Why these choices:

* Queries are scoped to this CR's scrape jobs exactly like the alert rules
  (``rules.selector``), so a dashboard never mixes two shops living in one Prometheus.
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
from dataclasses import dataclass
from typing import Any, Literal

from grafana_foundation_sdk.builders import common as sdk_common
from grafana_foundation_sdk.builders import dashboard as sdk_dashboard
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as common_models
from grafana_foundation_sdk.models import dashboard as dashboard_models
from grafana_foundation_sdk.models.dashboard import DataSourceRef

from jewelry_monitoring.builders import rules
from jewelry_monitoring.builders.common import Owner

DATASOURCE_VARIABLE = "datasource"
RATE = "$__rate_interval"
UID_MAX = 40

# Requirements a section can have besides a component name ("app" or an exporter).
ALWAYS = "always"
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
_APP_PODS = "and on (namespace, pod) up{{sel}}"
_FS = 'fstype!~"tmpfs|ramfs|squashfs|overlay"'


def _slo_section(kind: str, requires: str) -> SectionDef:
    """Error ratio of one SLI over the alerting windows, next to the allowed share."""
    return SectionDef(
        f"SLO: {kind}",
        requires,
        (
            PanelDef(
                f"{kind.capitalize()} SLI: share of bad requests",
                tuple(
                    _q(f"{rules.slo_error_ratio_record(kind, window)}{{{{sel}}}}", window)
                    for window in ("5m", "1h", "6h", "1d", "3d")
                ),
                "percentunit",
                width=24,
                description="Burn-rate alerts fire when both windows of a pair exceed "
                "factor x error budget.",
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
                    PanelDef(
                        "Nginx requests/s",
                        (_q(f"sum(rate(nginx_http_requests_total{{{{sel}}}}[{RATE}]))", "req/s"),),
                        "reqps",
                        component="nginx",
                        width=8,
                    ),
                    PanelDef(
                        "Nginx connections",
                        tuple(
                            _q(f"sum(nginx_connections_{state}{{{{sel}}}})", state)
                            for state in ("active", "reading", "writing", "waiting")
                        ),
                        component="nginx",
                        width=8,
                    ),
                    PanelDef(
                        "Accepted vs handled connections",
                        tuple(
                            _q(f"sum(rate(nginx_connections_{what}{{{{sel}}}}[{RATE}]))", what)
                            for what in ("accepted", "handled")
                        ),
                        "ops",
                        component="nginx",
                        width=8,
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
                                f'sum by (pod) (rate({_CPU}{{namespace="{{namespace}}",'
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
                                f'sum by (pod) ({_MEM}{{namespace="{{namespace}}",'
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
                "node",
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
                        component="node",
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
                        component="node",
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
                        component="node",
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
                        component="node",
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
                        component="node",
                    ),
                    PanelDef(
                        "Load average (1m)",
                        (_q("node_load1{{sel}}", "{{instance}}"),),
                        component="node",
                    ),
                ),
            ),
        ),
    ),
)


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


def _available(owner: Owner) -> set[str]:
    spec = owner.spec
    components = _components(owner)
    available = {*components, *([ALWAYS] if components else [])}
    if spec.app.enabled:
        available.add(rules.APP)
        if spec.slos.availability is not None:
            available.add(SLO_AVAILABILITY)
        if spec.slos.latency is not None:
            available.add(SLO_LATENCY)
    return available


def _matchers(owner: Owner, component: str) -> str:
    """``{sel}`` of a component; "all" means every scrape job of this CR."""
    if component != "all":
        return rules.selector(owner, component)
    jobs = [rules.component_job(owner, c) for c in _components(owner)]
    return f'namespace="{owner.namespace}",job=~"{"|".join(jobs)}"'


def panel_exprs(owner: Owner, panel: PanelDef) -> list[tuple[str, str]]:
    """A panel's PromQL with the CR's matchers filled in, as (expr, legend) pairs."""
    sel = _matchers(owner, panel.component)
    return [
        (expr.replace("{sel}", sel).replace("{namespace}", owner.namespace), legend)
        for expr, legend in panel.queries
    ]


def _panel(owner: Owner, panel: PanelDef, panel_id: int) -> Any:
    datasource = DataSourceRef(type_val="prometheus", uid=f"${{{DATASOURCE_VARIABLE}}}")
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
    for index, (expr, legend) in enumerate(panel_exprs(owner, panel)):
        query = prometheus.Dataquery().expr(expr).ref_id(chr(ord("A") + index))
        query = query.datasource(datasource)
        if legend:
            query = query.legend_format(legend)
        if panel.kind == "stat":
            query = query.instant()
        builder = builder.with_target(query)
    return builder


def _build(owner: Owner, definition: DashboardDef, available: set[str]) -> dict[str, Any] | None:
    sections = [s for s in definition.sections if s.requires in available]
    if not sections:
        return None
    cr_tag = f"jewelry:{owner.namespace}/{owner.name}"
    builder = (
        sdk_dashboard.Dashboard(f"Jewelry / {definition.title} ({owner.namespace}/{owner.name})")
        .uid(dashboard_uid(owner, definition.slug))
        .tags(["jewelry", *definition.tags, cr_tag])
        .description(
            f"Generated by jewelry-monitoring for JewelryMonitoring {owner.namespace}/"
            f"{owner.name}; edits are overwritten."
        )
        .refresh("30s")
        .time("now-6h", "now")
        .readonly()
        # An empty list, not a missing one: Grafana adds its built-in annotation to it.
        .annotations([])
        .link(
            # The other dashboards of this CR, found by the tag only they carry.
            sdk_dashboard.DashboardLink("Jewelry dashboards")
            .type(dashboard_models.DashboardLinkType.DASHBOARDS)
            .tags([cr_tag])
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
    panel_id = 0
    for section in sections:
        panel_id += 1
        builder = builder.with_row(sdk_dashboard.Row(section.title).id(panel_id))
        for panel in section.panels:
            panel_id += 1
            builder = builder.with_panel(_panel(owner, panel, panel_id))
    # The SDK's models serialise through its JSONEncoder; a round trip gives plain dicts.
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return model


def dashboards(owner: Owner) -> dict[str, dict[str, Any]]:
    """Dashboard file name (``jewelry-<slug>.json``) → Grafana dashboard JSON model."""
    available = _available(owner)
    result = {}
    for definition in DASHBOARDS:
        model = _build(owner, definition, available)
        if model is not None:
            result[f"jewelry-{definition.slug}.json"] = model
    return result
