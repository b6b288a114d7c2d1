"""The PrometheusRule of one JewelryMonitoring: recording rules, alert catalog and SLO alerts.

Why it is built this way:

* Every expression is scoped to this CR's own scrape targets with ``namespace`` and ``job``
  matchers (prometheus-operator sets ``job`` to the Service name and adds ``namespace``), so
  two CRs, or a CR and some unrelated Django app, never see each other's series even though
  they share recording-rule names.
* Every aggregation keeps ``cluster`` too: absent on one cluster's own series, it is the
  external label a global view (federation, Thanos, Mimir) adds, and rules evaluated there
  (a global ruler) must not add two clusters' shops into one.
* Alerts are rows of one table (``CATALOG``); overrides, labels and runbook links are applied
  uniformly by one function, so every alert behaves the same way and a new alert is one row.
* Metric names are the ones the shipped software really exports (measured from the app's
  ``/metrics`` and from running the exporters), not the names from older documentation.
* SLO alerts follow the multi-window, multi-burn-rate scheme of the Google SRE workbook
  ("Alerting on SLOs"): a short window confirms the long one is still burning, which keeps
  both detection time and reset time short.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jewelry_monitoring.builders.common import APP_COMPONENT, Owner, job_name
from jewelry_monitoring.spec import (
    ALERT_OWNER_LABEL,
    DEFAULT_RUNBOOK_URL_BASE,
    EXPORTER_NAMES,
    AlertsSpec,
    JewelryMonitoringSpec,
    Severity,
    duration_seconds,
)

Rule = dict[str, Any]
Group = dict[str, Any]

APP = "app"

# Sample names as PromQL sees them (see app/METRICS.md, generated from a real scrape).
HTTP_RESPONSES = "django_http_responses_total_by_status_total"
HTTP_REQUESTS = "django_http_requests_total_by_method_total"
HTTP_LATENCY = "django_http_requests_latency_seconds_by_view_method"
DB_QUERY_DURATION = "django_db_query_duration_seconds"

# Recording rules, named level:metric:operations. ``job`` level keeps (cluster,) namespace
# and job.
REQUESTS_RATE = "job:django_http_requests:rate5m"
RESPONSES_RATE = "job:django_http_responses:rate5m"
RESPONSES_5XX_RATIO = "job:django_http_responses_5xx:ratio_rate5m"
LATENCY_BUCKET_RATE = "job:django_http_request_latency_seconds_bucket:rate5m"
LATENCY_QUANTILES = {
    q: f"job:django_http_request_latency_seconds:p{round(q * 100)}_5m" for q in (0.5, 0.95, 0.99)
}
CACHE_HIT_RATIO = "job_backend:django_cache_get_hits:ratio_rate5m"
CACHE_GETS_RATE = "job_backend:django_cache_gets:rate5m"
DB_QUERIES_RATE = "job:django_db_queries:rate5m"
DB_ERRORS_RATE = "job:django_db_errors:rate5m"
DB_DURATION_P95 = "job:django_db_query_duration_seconds:p95_5m"


def slo_error_ratio_record(kind: str, window: str) -> str:
    """Name of the recorded share of *bad* events of one SLI over one window (the SLO window
    included: 1 - that is the SLI over the whole window)."""
    return f"job:jewelry_slo_{kind}_errors:ratio_rate{window}"


# The error budget: what the SLO window's errors leave of it (1 = untouched, 0 = spent, less
# = overspent); the current burn rate (1 = the budget lasts exactly the SLO window); the
# objective as a ratio, for dashboards. Each ``job:jewelry_slo_<kind>_…``.
def slo_budget_remaining_record(kind: str) -> str:
    return f"job:jewelry_slo_{kind}_error_budget:remaining_ratio"


def slo_burn_rate_record(kind: str, window: str) -> str:
    return f"job:jewelry_slo_{kind}_burn_rate:ratio_rate{window}"


def slo_objective_record(kind: str) -> str:
    return f"job:jewelry_slo_{kind}_objective:ratio"


def slo_events_record(kind: str, which: str) -> str:
    """Bad (``errors``) or all (``events``) events per second over 5 minutes: the terms the
    SLO window's ratio is summed from."""
    return f"job:jewelry_slo_{kind}_{which}:rate5m"


def _sum(expr: str, by: str = "cluster, namespace, job") -> str:
    return f"sum by ({by}) ({expr})"


def _or_zero(part: str, other: str) -> str:
    """``part``, or 0 for every series of ``other`` where ``part`` has none (yet)."""
    return f"({part}\nor\n{other} * 0)"


def _share(part: str, total: str) -> str:
    """``part / total`` that is 0, not absent, while ``part`` has no series yet.

    django-prometheus creates a status series on its first use, so before the first 5xx
    there is nothing to divide: the ratio would vanish, dashboards show "No data", and an
    alert on a low share (no cache hit at all) could never fire.
    """
    return f"{_or_zero(part, total)}\n/\n{total}"


def _app_recording_rules(sel: str) -> list[Rule]:
    """What dashboards and alerts read: cheap, pre-aggregated series per app job."""
    latency_buckets = _sum(
        f"rate({HTTP_LATENCY}_bucket{{{sel}}}[5m])", "cluster, namespace, job, le"
    )
    by_backend = "cluster, namespace, job, backend"
    # Of all reads, failed ones (Redis down under IGNORE_EXCEPTIONS) included: hits appear
    # only after the first hit, reads with the first read of any outcome.
    hits = _sum(f"rate(django_cache_get_hits_total{{{sel}}}[5m])", by_backend)
    gets = _sum(f"rate(django_cache_get_total{{{sel}}}[5m])", by_backend)
    responses = _sum(f"rate({HTTP_RESPONSES}{{{sel}}}[5m])")
    responses_5xx = _sum(f'rate({HTTP_RESPONSES}{{{sel},status=~"5.."}}[5m])')
    db_buckets = _sum(
        f"rate({DB_QUERY_DURATION}_bucket{{{sel}}}[5m])", "cluster, namespace, job, le"
    )
    records: list[tuple[str, str]] = [
        (REQUESTS_RATE, _sum(f"rate({HTTP_REQUESTS}{{{sel}}}[5m])")),
        (RESPONSES_RATE, responses),
        (RESPONSES_5XX_RATIO, _share(responses_5xx, responses)),
        (LATENCY_BUCKET_RATE, latency_buckets),
        *(
            (record, f"histogram_quantile({q}, {LATENCY_BUCKET_RATE}{{{sel}}})")
            for q, record in LATENCY_QUANTILES.items()
        ),
        (CACHE_GETS_RATE, gets),
        (CACHE_HIT_RATIO, _share(hits, gets)),
        (DB_QUERIES_RATE, _sum(f"rate(django_db_execute_total{{{sel}}}[5m])")),
        (DB_ERRORS_RATE, _sum(f"rate(django_db_errors_total{{{sel}}}[5m])")),
        (DB_DURATION_P95, f"histogram_quantile(0.95, {db_buckets})"),
    ]
    return [{"record": record, "expr": expr} for record, expr in records]


@dataclass(frozen=True)
class AlertDef:
    """One row of the alert catalog.

    ``expr`` and ``description`` are templates: ``{selector}`` becomes the CR's matchers
    without braces (``namespace="…",job="…"``, so a template can add its own matchers after a
    comma), ``{threshold}`` the effective threshold and ``{min_request_rate}`` the CR's
    ``alerts.minRequestRate``. Plain ``str.replace`` is used, so PromQL braces need no
    escaping. Alerts without a threshold (``None``) ignore overrides of it: whether every
    target is down is not a matter of degree. Rows may share a name (one alert with a warning
    and a critical rule); their ``labels`` tell the rules apart.
    """

    name: str
    component: str
    expr: str
    threshold: float | None
    for_: str
    severity: Severity
    summary: str
    description: str
    labels: tuple[tuple[str, str], ...] = ()


def _exporter_down(component: str, title: str, target: str) -> AlertDef:
    """The same question for every exporter (one replica each): is Prometheus getting metrics?"""
    return AlertDef(
        name=f"{title}Down",
        component=component,
        # absent() covers "no target at all" (Service selects no pods, ServiceMonitor not
        # picked up), which ``up == 0`` alone would never report.
        expr="up{{selector}} == 0 or absent(up{{selector}})",
        threshold=None,
        for_="5m",
        severity="warning",
        summary=f"{target} is down",
        description=(
            "Prometheus cannot scrape job {{ $labels.job }} in namespace "
            "{{ $labels.namespace }}, or finds no target at all. The alerts relying on its "
            "metrics are blind."
        ),
    )


# The app runs as many pods: one of them down is a ticket, all of them down is a page.
_DJANGO_TARGET_DOWN = (
    AlertDef(
        "DjangoTargetDown",
        APP,
        "(\n  count by (cluster, namespace, job) (up{{selector}} == 0)\n  /\n"
        "  count by (cluster, namespace, job) (up{{selector}})\n) > {threshold}",
        0.1,
        "5m",
        "warning",
        "Some Django metrics targets are down",
        "More than {threshold} of the targets of job {{ $labels.job }} in "
        "{{ $labels.namespace }} cannot be scraped.",
        labels=(("targets", "some"),),
    ),
    AlertDef(
        "DjangoTargetDown",
        APP,
        # absent() covers "no target at all" (Service selects no pods, ServiceMonitor not
        # picked up), which a sum over no series would never report.
        "sum by (cluster, namespace, job) (up{{selector}}) == 0 or absent(up{{selector}})",
        None,
        "5m",
        "critical",
        "Every Django metrics target is down",
        "Prometheus cannot scrape any target of job {{ $labels.job }} in namespace "
        "{{ $labels.namespace }}, or finds no target at all.",
        labels=(("targets", "all"),),
    ),
)

# (component, alert name prefix, what is scraped) for the exporter-down alerts.
_EXPORTER_TARGETS = (
    ("postgres", "PostgresExporter", "postgres_exporter"),
    ("redis", "RedisExporter", "redis_exporter"),
    ("nginx", "NginxExporter", "nginx-prometheus-exporter"),
    ("celery", "CeleryExporter", "celery-exporter"),
)
assert {component for component, _, _ in _EXPORTER_TARGETS} == set(EXPORTER_NAMES)

_CELERY_FAILED = _sum(
    "rate(celery_task_failed_total{{selector}}[10m])", "cluster, namespace, job, name"
)
_CELERY_SUCCEEDED = _sum(
    "rate(celery_task_succeeded_total{{selector}}[10m])", "cluster, namespace, job, name"
)

CATALOG: tuple[AlertDef, ...] = (
    *_DJANGO_TARGET_DOWN,
    *(_exporter_down(*target) for target in _EXPORTER_TARGETS),
    # --- Django application -------------------------------------------------------------
    AlertDef(
        "HighErrorRate",
        APP,
        # A share of the responses, not a rate of 5xx: 0.05/s of 5xx is nothing for a busy
        # shop and everything for a quiet one. The request-rate floor keeps one 5xx of a
        # quiet app (a large share of very little) from paging.
        f"{RESPONSES_5XX_RATIO}{{{{selector}}}} > {{threshold}}\nand\n"
        f"{RESPONSES_RATE}{{{{selector}}}} > {{min_request_rate}}",
        0.05,
        "5m",
        "critical",
        "High share of 5xx responses",
        "More than {threshold} of the responses of {{ $labels.job }} in "
        "{{ $labels.namespace }} are server errors (5xx) over the last 5 minutes, at more "
        "than {min_request_rate} responses per second.",
    ),
    AlertDef(
        "SlowRequests",
        APP,
        f"{LATENCY_QUANTILES[0.95]}{{{{selector}}}} > {{threshold}}",
        2.0,
        "5m",
        "warning",
        "95th percentile request latency is high",
        "The 95th percentile latency of {{ $labels.job }} in {{ $labels.namespace }} is "
        "above {threshold}s over the last 5 minutes.",
    ),
    AlertDef(
        "DjangoUnhandledExceptions",
        APP,
        "sum by (cluster, namespace, job, type) "
        "(rate(django_http_exceptions_total_by_type_total{{selector}}[5m])) > {threshold}",
        0.05,
        "5m",
        "warning",
        "Django views raise unhandled exceptions",
        "Views of {{ $labels.job }} in {{ $labels.namespace }} raise more than {threshold} "
        "unhandled {{ $labels.type }} exceptions per second.",
    ),
    AlertDef(
        "DjangoDatabaseErrors",
        APP,
        # By driver exception class: UniqueViolation and OperationalError mean different things.
        "sum by (cluster, namespace, job, alias, type) "
        "(rate(django_db_errors_total{{selector}}[5m])) > {threshold}",
        0.1,
        "5m",
        "warning",
        "Database errors in Django",
        "Database alias {{ $labels.alias }} of {{ $labels.job }} in {{ $labels.namespace }} "
        "raises more than {threshold} {{ $labels.type }} errors per second.",
    ),
    AlertDef(
        "DjangoSlowDatabaseQueries",
        APP,
        f"{DB_DURATION_P95}{{{{selector}}}} > {{threshold}}",
        0.5,
        "10m",
        "warning",
        "95th percentile database query duration is high",
        "The 95th percentile duration of the database queries of {{ $labels.job }} in "
        "{{ $labels.namespace }} is above {threshold}s.",
    ),
    AlertDef(
        "DjangoCacheHitRatioLow",
        APP,
        f"{CACHE_HIT_RATIO}{{{{selector}}}} < {{threshold}}",
        0.8,
        "15m",
        "warning",
        "Low cache hit ratio",
        "Fewer than {threshold} of the cache reads of {{ $labels.job }} in "
        "{{ $labels.namespace }} (backend {{ $labels.backend }}) are hits; failed reads "
        "count as misses.",
    ),
    AlertDef(
        "DjangoUnappliedMigrations",
        APP,
        # Aggregated over pods (and, in multiprocess setups that expose it, pid): every
        # pod reports the same database state.
        "max by (cluster, namespace, job, connection) "
        "(django_migrations_unapplied_total{{selector}}) > {threshold}",
        0,
        "15m",
        "warning",
        "Unapplied Django migrations",
        "Database connection {{ $labels.connection }} of {{ $labels.job }} in "
        "{{ $labels.namespace }} has unapplied migrations: run migrate.",
    ),
    # --- PostgreSQL ---------------------------------------------------------------------
    AlertDef(
        "PostgresDown",
        "postgres",
        "pg_up{{selector}} == 0",
        None,
        "1m",
        "critical",
        "PostgreSQL is unreachable",
        "postgres_exporter {{ $labels.job }} in {{ $labels.namespace }} cannot connect "
        "to PostgreSQL.",
    ),
    AlertDef(
        "PostgresTooManyConnections",
        "postgres",
        "sum by (cluster, namespace, job, instance) (pg_stat_database_numbackends{{selector}})\n/\n"
        "max by (cluster, namespace, job, instance) (pg_settings_max_connections{{selector}})\n"
        "> {threshold}",
        0.8,
        "5m",
        "warning",
        "PostgreSQL is running out of connections",
        "More than {threshold} of max_connections are in use on the PostgreSQL server "
        "watched by {{ $labels.job }} in {{ $labels.namespace }}.",
    ),
    # --- Redis --------------------------------------------------------------------------
    AlertDef(
        "RedisDown",
        "redis",
        "redis_up{{selector}} == 0",
        None,
        "1m",
        "critical",
        "Redis is unreachable",
        "redis_exporter {{ $labels.job }} in {{ $labels.namespace }} cannot reach Redis.",
    ),
    AlertDef(
        "RedisMemoryNearLimit",
        "redis",
        # maxmemory 0 means "no limit": without the guard the ratio would be +Inf.
        "(redis_memory_used_bytes{{selector}} / redis_memory_max_bytes{{selector}} > {threshold})"
        "\nand\nredis_memory_max_bytes{{selector}} > 0",
        0.9,
        "5m",
        "warning",
        "Redis memory is close to maxmemory",
        "Redis watched by {{ $labels.job }} in {{ $labels.namespace }} uses more than "
        "{threshold} of maxmemory; keys will be evicted or writes refused.",
    ),
    AlertDef(
        "RedisRejectedConnections",
        "redis",
        "increase(redis_rejected_connections_total{{selector}}[5m]) > {threshold}",
        0,
        "0m",
        "warning",
        "Redis rejects connections",
        "Redis watched by {{ $labels.job }} in {{ $labels.namespace }} rejected "
        "connections (maxclients reached).",
    ),
    # --- Nginx --------------------------------------------------------------------------
    AlertDef(
        "NginxDown",
        "nginx",
        "nginx_up{{selector}} == 0",
        None,
        "1m",
        "critical",
        "Nginx stub_status is unreachable",
        "nginx-prometheus-exporter {{ $labels.job }} in {{ $labels.namespace }} cannot "
        "read nginx's stub_status.",
    ),
    AlertDef(
        "NginxDroppedConnections",
        "nginx",
        # accepted - handled grows only when nginx hits worker_connections or a resource
        # limit: a dropped client connection.
        "rate(nginx_connections_accepted{{selector}}[5m])"
        " - rate(nginx_connections_handled{{selector}}[5m]) > {threshold}",
        0,
        "5m",
        "warning",
        "Nginx drops client connections",
        "Nginx watched by {{ $labels.job }} in {{ $labels.namespace }} accepts connections "
        "it does not handle (worker_connections or resource limits).",
    ),
    # --- Celery -------------------------------------------------------------------------
    AlertDef(
        "CeleryTaskFailures",
        "celery",
        # A task that never succeeded has no succeeded series: count it as 0 successes,
        # or the task failing every time would be the one case that never alerts.
        f"{_CELERY_FAILED}\n/\n(\n  {_CELERY_FAILED}\n  +\n  "
        f"{_or_zero(_CELERY_SUCCEEDED, _CELERY_FAILED)}\n)\n> {{threshold}}",
        0.05,
        "10m",
        "warning",
        "Celery task failures",
        "More than {threshold} of the runs of Celery task {{ $labels.name }} fail "
        "(job {{ $labels.job }} in {{ $labels.namespace }}).",
    ),
    AlertDef(
        "CeleryNoWorkers",
        "celery",
        # A worker series appears only once a worker was seen: with the exporter up and no
        # series at all, count that as zero workers rather than as nothing to alert on.
        "(sum by (cluster, namespace, job) (celery_worker_up{{selector}})"
        " or sum by (cluster, namespace, job) (up{{selector}} == 1) * 0) <= {threshold}",
        0,
        "5m",
        "critical",
        "No Celery worker is alive",
        "celery-exporter {{ $labels.job }} in {{ $labels.namespace }} sees no worker "
        "heartbeat: queued tasks are not processed.",
    ),
    AlertDef(
        "CeleryQueueBacklog",
        "celery",
        "sum by (cluster, namespace, job, queue_name) (celery_queue_length{{selector}})"
        " > {threshold}",
        100,
        "15m",
        "warning",
        "Celery queue backlog",
        "More than {threshold} messages wait in Celery queue {{ $labels.queue_name }} "
        "(job {{ $labels.job }} in {{ $labels.namespace }}).",
    ),
)

# --- The chart's node exporter -----------------------------------------------------------
# Not a CR's: the release runs it (templates/node-exporter.yaml) and ships these rules with
# it, generated by ``jm-dev manifests`` (``node_exporter_rule_groups``).
_NODE_FS = 'fstype!~"tmpfs|ramfs|squashfs|overlay"'
NODE_CATALOG: tuple[AlertDef, ...] = (
    _exporter_down("node", "NodeExporter", "node_exporter"),
    AlertDef(
        "NodeFilesystemAlmostFull",
        "node",
        f"(\n  node_filesystem_avail_bytes{{{{selector}},{_NODE_FS}}}\n"
        f"  /\n  node_filesystem_size_bytes{{{{selector}},{_NODE_FS}}}"
        "\n  < {threshold}\n)\nand\n"
        f"node_filesystem_readonly{{{{selector}},{_NODE_FS}}} == 0",
        0.1,
        "15m",
        "warning",
        "Filesystem almost full",
        "Less than {threshold} of {{ $labels.mountpoint }} on {{ $labels.instance }} is free.",
    ),
    AlertDef(
        "NodeMemoryLow",
        "node",
        "node_memory_MemAvailable_bytes{{selector}} / node_memory_MemTotal_bytes{{selector}}"
        " < {threshold}",
        0.1,
        "10m",
        "warning",
        "Node memory is low",
        "Less than {threshold} of the memory of {{ $labels.instance }} is available.",
    ),
)


def node_exporter_rule_groups(namespace: str, job: str, runbook_url_base: str) -> list[Group]:
    """The alerts on the chart's node exporter, scraped as ``job`` in ``namespace``."""
    alerts = AlertsSpec(runbook_url_base=runbook_url_base)
    matchers = f'namespace="{namespace}",job="{job}"'
    rules = [_catalog_rule(alerts, alert, matchers) for alert in NODE_CATALOG]
    return [{"name": "jewelry.node-exporter.alerts", "rules": rules}]


# --- SLOs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BurnPolicy:
    """One row of the SRE workbook's table ("Alerting on SLOs"), written for a 30-day SLO.

    ``budget_fraction`` is the share of the whole error budget an alert lets burn during
    ``long`` before it fires: that share is what the workbook chose, and what stays the same
    for every SLO window.
    """

    budget_fraction: float
    long: str
    short: str
    for_: str
    severity: Severity


WORKBOOK_SLO_WINDOW = "30d"
WORKBOOK_TABLE = (
    BurnPolicy(0.02, "1h", "5m", "2m", "critical"),  # page: 2 % of the budget in 1 hour
    BurnPolicy(0.05, "6h", "30m", "15m", "critical"),  # page: 5 % in 6 hours
    BurnPolicy(0.10, "1d", "2h", "1h", "warning"),  # ticket: 10 % in 1 day
    BurnPolicy(0.10, "3d", "6h", "3h", "warning"),  # ticket: 10 % in 3 days
)
# A short window below this holds too few scrapes for rate() to be more than noise.
MIN_SHORT_WINDOW_SECONDS = 300


@dataclass(frozen=True)
class BurnWindow:
    """A workbook row made concrete for one SLO window: windows, ``for`` and burn-rate factor."""

    long: str
    short: str
    for_: str
    severity: Severity
    factor: float  # how many times faster than "exactly the budget over the SLO window"
    budget_fraction: float


def format_duration(seconds: float) -> str:
    """A Prometheus duration in days, hours and minutes: 4032 min → ``2d19h12m``."""
    minutes = round(seconds / 60)
    parts = []
    for unit, size in (("d", 1440), ("h", 60), ("m", 1)):
        amount, minutes = divmod(minutes, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0m"


def burn_windows(slo_window: str) -> tuple[BurnWindow, ...]:
    """The workbook's table for ``slo_window``, every alert spending the workbook's budget share.

    The burn-rate factor is budget fraction * SLO window / long window. Keeping the 30-day
    windows (1h … 3d) for a 7-day SLO would give factors 3.36 / 1.4 / 0.7 / 0.23: tickets
    firing while the budget would last the whole window. So the windows scale with the SLO
    window (whole minutes; short windows at least 5m) and the factors come out as the
    workbook's 14.4 / 6 / 3 / 1 for every window, never below 1.
    """
    slo_seconds = duration_seconds(slo_window)
    scale = slo_seconds / duration_seconds(WORKBOOK_SLO_WINDOW)

    def scaled(duration: str, minimum: float) -> float:
        return max(round(duration_seconds(duration) * scale / 60) * 60, minimum)

    windows = []
    for policy in WORKBOOK_TABLE:
        long = scaled(policy.long, 60)
        windows.append(
            BurnWindow(
                long=format_duration(long),
                short=format_duration(scaled(policy.short, MIN_SHORT_WINDOW_SECONDS)),
                for_=format_duration(scaled(policy.for_, 60)),
                severity=policy.severity,
                factor=round(policy.budget_fraction * slo_seconds / long, 6),
                budget_fraction=policy.budget_fraction,
            )
        )
    return tuple(windows)


def slo_windows(slo_window: str) -> list[str]:
    """Every window the SLO error ratios are recorded over, shortest first."""
    names = {w for burn in burn_windows(slo_window) for w in (burn.long, burn.short)}
    return sorted(names, key=duration_seconds)


def error_budget(objective_percent: float) -> float:
    """The share of events allowed to be bad: 99.9 → 0.001."""
    return round(1 - objective_percent / 100, 12)


SLO_ALERTS = {
    "availability": "JewelryAvailabilityBudgetBurn",
    "latency": "JewelryLatencyBudgetBurn",
}

# --- Cardinality guard ------------------------------------------------------------------
# Each scrape's samples as a share of its sampleLimit (spec ``scrapeLimits``), per target, and
# the alert before the limit refuses whole scrapes. One alert for all the CR's limited jobs
# (``{selector}`` matches them all), so it is not a per-component row of CATALOG.
SAMPLE_LIMIT_RATIO = "target:scrape_samples:ratio_sample_limit"
SAMPLE_LIMIT_ALERT = AlertDef(
    "TargetNearSampleLimit",
    "all",
    f"{SAMPLE_LIMIT_RATIO}{{{{selector}}}} > {{threshold}}",
    0.8,
    "15m",
    "warning",
    "A target's scrape nears its sampleLimit",
    "{{ $labels.instance }} of job {{ $labels.job }} in {{ $labels.namespace }} returns "
    "more than {threshold} of the samples its sampleLimit (spec scrapeLimits) allows. Past "
    "the limit every scrape of it is refused and the target shows down: find the metric "
    "family that grows (jewelry-monitoring doctor names the biggest) before raising the "
    "limit.",
)


def _sample_limits(owner: Owner) -> dict[str, int]:
    """The sampleLimit of each enabled component that has one (0 is no limit)."""
    spec = owner.spec
    limits = {APP: spec.app.scrape_limits.sample_limit} if spec.app.enabled else {}
    for name, exporter in spec.exporters.enabled().items():
        limits[name] = exporter.scrape_limits.sample_limit
    return {component: limit for component, limit in limits.items() if limit}


def _sample_limit_rules(owner: Owner) -> list[Rule]:
    """The ratio of every limited target (one rule: each job divided by its own limit),
    then the alert reading it."""
    limits = _sample_limits(owner)
    if not limits:
        return []
    # After metric relabeling: what sampleLimit counts.
    ratio = "\nor\n".join(
        f"scrape_samples_post_metric_relabeling{{{selector(owner, component)}}} / {limit}"
        for component, limit in limits.items()
    )
    rules = [{"record": SAMPLE_LIMIT_RATIO, "expr": ratio}]
    jobs = "|".join(component_job(owner, component) for component in limits)
    matchers = f'namespace="{owner.namespace}",job=~"{jobs}"'
    alert = _catalog_rule(owner.spec.alerts, SAMPLE_LIMIT_ALERT, matchers)
    if owner.spec.alerts.enabled and alert is not None:
        rules.append(alert)
    return rules


KNOWN_ALERTS: frozenset[str] = frozenset(
    {alert.name for alert in CATALOG} | set(SLO_ALERTS.values()) | {SAMPLE_LIMIT_ALERT.name}
)

_MIDDLEWARES = "django-prometheus's middlewares, first and last in the app's MIDDLEWARE"
_DATABASE = "a database ENGINE wrapped by django-prometheus (`manage.py check` W004)"
_NODE_EXPORTER = "the chart's `nodeExporter.enabled` and its `serviceMonitor.enabled`"
# What must be enabled, besides the alert's component, for the series an alert reads to
# exist: an alert whose series never appear can never fire. The alert catalogue
# (charts/jewelry-monitoring/runbooks/README.md) shows it.
REQUIREMENTS: dict[str, str] = {
    "DjangoTargetDown": "`app.enabled` (the default)",
    **{
        f"{title}Down": f"`exporters.{component}.enabled`"
        for component, title, _ in _EXPORTER_TARGETS
    },
    "HighErrorRate": _MIDDLEWARES,
    "SlowRequests": _MIDDLEWARES,
    "DjangoUnhandledExceptions": _MIDDLEWARES,
    "DjangoDatabaseErrors": _DATABASE,
    "DjangoSlowDatabaseQueries": _DATABASE,
    "DjangoCacheHitRatioLow": "a cache BACKEND of django-prometheus or jewelry-monitoring-django "
    "(`manage.py check` W005, W011)",
    "DjangoUnappliedMigrations": "`PROMETHEUS_EXPORT_MIGRATIONS = True` in the app's settings "
    "(`manage.py check` W014)",
    "PostgresDown": "`exporters.postgres.enabled` with its `dataSource`",
    "PostgresTooManyConnections": "`exporters.postgres.enabled` with its `dataSource`",
    "RedisDown": "`exporters.redis.enabled`",
    "RedisMemoryNearLimit": "`exporters.redis.enabled`; a Redis `maxmemory` (0 never fires)",
    "RedisRejectedConnections": "`exporters.redis.enabled`",
    "NginxDown": "`exporters.nginx.enabled`",
    "NginxDroppedConnections": "`exporters.nginx.enabled`; nginx's `stub_status` at `scrapeUri`",
    "CeleryTaskFailures": "`exporters.celery.enabled`; Celery task events from the workers "
    "(`worker_send_task_events = True` or `celery worker -E`; `manage.py check` W015)",
    "CeleryNoWorkers": "`exporters.celery.enabled`; worker heartbeats (on unless "
    "`--without-heartbeat`)",
    "CeleryQueueBacklog": "`exporters.celery.enabled`; a Redis or RabbitMQ broker",
    "JewelryAvailabilityBudgetBurn": f"`slos.availability`; {_MIDDLEWARES}",
    "JewelryLatencyBudgetBurn": f"`slos.latency`; {_MIDDLEWARES}",
    SAMPLE_LIMIT_ALERT.name: "a `scrapeLimits.sampleLimit` above 0 (the default, 20,000) on "
    "the app or an exporter",
    "NodeExporterDown": _NODE_EXPORTER,
    "NodeFilesystemAlmostFull": _NODE_EXPORTER,
    "NodeMemoryLow": _NODE_EXPORTER,
}
assert set(REQUIREMENTS) == KNOWN_ALERTS | {alert.name for alert in NODE_CATALOG}


def le_matcher(threshold_seconds: float) -> str:
    """Match the ``le`` bucket of a threshold however the bucket label is spelled.

    A whole-number bucket is spelled ``le="1.0"`` by prometheus_client but ``le="1"`` by
    other clients, and Prometheus 3 rewrites ``le`` values on ingestion. A regex accepting both
    spellings keeps the latency SLO correct whichever Prometheus stores the series.
    """
    text = repr(float(threshold_seconds))
    if text.endswith(".0"):
        return f'le=~"{text[:-2]}(\\\\.0)?"'
    return f'le="{text}"'


def _slo_error_ratio(spec: JewelryMonitoringSpec, kind: str, sel: str, window: str) -> str:
    """Share of bad events over ``window``: 5xx responses, or requests slower than the bucket."""
    if kind == "availability":
        bad = _sum(f'rate({HTTP_RESPONSES}{{{sel},status=~"5.."}}[{window}])')
        total = _sum(f"rate({HTTP_RESPONSES}{{{sel}}}[{window}])")
        return _share(bad, total)
    good, total = _latency_good_and_total(spec, sel, window)
    return f"1 - (\n{good}\n/\n{total}\n)"


def _latency_good_and_total(spec: JewelryMonitoringSpec, sel: str, window: str) -> tuple[str, str]:
    """Requests faster than the latency SLO's bucket, and all requests, per second."""
    assert spec.slos.latency is not None
    le = le_matcher(spec.slos.latency.threshold_seconds)
    good = _sum(f"rate({HTTP_LATENCY}_bucket{{{sel},{le}}}[{window}])")
    total = _sum(f"rate({HTTP_LATENCY}_count{{{sel}}}[{window}])")
    return good, total


def burn_condition(factor: float, budget: float) -> tuple[float, str]:
    """The burn-rate factor an alert can use and its comparison of the error ratio.

    An error ratio never exceeds 1, so the fastest burn is 1 / budget (every event bad): at
    low objectives the workbook's 14.4 (objectives up to 93.06 %) and 6 (up to 83.3 %) would
    need more than every request to fail and could never fire. Such a factor is capped at
    1 / budget, and its alert fires while every event in both windows is bad.
    """
    if factor * budget >= 1:
        return round(1 / budget, 6), ">= 1"
    return factor, f"> ({_format_threshold(factor)} * {_format_threshold(budget)})"


def _slo_budget_rules(owner: Owner, kind: str, objective: float) -> list[Rule]:
    """The SLI over the whole SLO window, the budget it leaves and the current burn rate.

    The window's ratio is not ``rate(...[30d])``, which would read every raw sample of 30
    days at each evaluation: it sums the 5-minute rates of bad and of all events recorded
    here over the window, so each evaluation reads one sample per evaluation interval of two
    series, and busy minutes weigh as much as their traffic (an average of 5-minute ratios
    would weigh a quiet night like a sale). Minutes without traffic add nothing."""
    spec = owner.spec
    sel = selector(owner, APP)
    window = spec.slos.window
    budget = _format_threshold(error_budget(objective))
    if kind == "availability":
        errors = _sum(f'rate({HTTP_RESPONSES}{{{sel},status=~"5.."}}[5m])')
        events = _sum(f"rate({HTTP_RESPONSES}{{{sel}}}[5m])")
        errors = f"{errors}\nor\n{events} * 0"
    else:
        good, events = _latency_good_and_total(spec, sel, "5m")
        errors = f"{events}\n-\n{good}"
    errors_record, events_record = (slo_events_record(kind, w) for w in ("errors", "events"))
    ratio = slo_error_ratio_record(kind, window)
    current = slo_windows(window)[0]
    return [
        {"record": errors_record, "expr": errors},
        {"record": events_record, "expr": events},
        {
            "record": ratio,
            "expr": f"sum_over_time({errors_record}{{{sel}}}[{window}])\n/\n"
            f"sum_over_time({events_record}{{{sel}}}[{window}])",
        },
        {"record": slo_budget_remaining_record(kind), "expr": f"1 - {ratio}{{{sel}}} / {budget}"},
        {
            "record": slo_burn_rate_record(kind, current),
            "expr": f"{slo_error_ratio_record(kind, current)}{{{sel}}} / {budget}",
        },
        {
            "record": slo_objective_record(kind),
            "expr": f"vector({_format_threshold(round(objective / 100, 12))})",
            "labels": {"namespace": owner.namespace, "job": component_job(owner, APP)},
        },
    ]


def slo_objectives(spec: JewelryMonitoringSpec) -> dict[str, float]:
    """The objective of each SLO the spec sets, in percent, by kind."""
    objectives = {}
    if spec.slos.availability is not None:
        objectives["availability"] = spec.slos.availability.objective
    if spec.slos.latency is not None:
        objectives["latency"] = spec.slos.latency.objective
    return objectives


# --- Assembly ---------------------------------------------------------------------------


def _format_threshold(value: float) -> str:
    return format(value, ".10g")


def component_job(owner: Owner, component: str) -> str:
    """The ``job`` label of a component's targets: the Service name prometheus-operator uses."""
    return job_name(owner.name, APP_COMPONENT if component == APP else f"{component}-exporter")


def selector(owner: Owner, component: str) -> str:
    """The matchers (without braces) that pick this CR's series of one component."""
    return f'namespace="{owner.namespace}",job="{component_job(owner, component)}"'


def _enabled_components(spec: JewelryMonitoringSpec) -> list[str]:
    return ([APP] if spec.app.enabled else []) + list(spec.exporters.enabled())


def _alert_rule(
    alerts: AlertsSpec,
    name: str,
    expr: str,
    for_: str,
    severity: Severity,
    summary: str,
    description: str,
    extra_labels: dict[str, str] | None = None,
) -> Rule | None:
    """One alerting rule with overrides, global labels and runbook link applied."""
    runbook_base = alerts.runbook_url_base or DEFAULT_RUNBOOK_URL_BASE
    override = alerts.overrides.get(name)
    if override is not None and override.disabled:
        return None
    final_severity = override.severity if override and override.severity else severity
    labels: dict[str, str] = {
        "severity": final_severity,
        **alerts.labels,
        **(override.labels if override else {}),
        # The rule's own labels win: they tell apart rules sharing one alert name.
        **(extra_labels or {}),
    }
    # Changing severity is what ``override.severity`` is for, not a stray extra label.
    labels["severity"] = final_severity
    return {
        "alert": name,
        "expr": expr,
        "for": override.for_ if override and override.for_ else for_,
        "labels": labels,
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{runbook_base.rstrip('/')}/{name.lower()}",
        },
    }


def _catalog_rule(alerts: AlertsSpec, alert: AlertDef, matchers: str) -> Rule | None:
    """A catalog row as a rule: ``matchers`` (without braces) pick the series it reads."""
    override = alerts.overrides.get(alert.name)
    threshold = alert.threshold
    if threshold is not None and override is not None and override.threshold is not None:
        threshold = override.threshold
    values = {
        "{selector}": matchers,
        "{threshold}": "" if threshold is None else _format_threshold(threshold),
        "{min_request_rate}": _format_threshold(alerts.min_request_rate),
    }

    def fill(template: str) -> str:
        for placeholder, value in values.items():
            template = template.replace(placeholder, value)
        return template

    return _alert_rule(
        alerts,
        alert.name,
        fill(alert.expr),
        alert.for_,
        alert.severity,
        alert.summary,
        fill(alert.description),
        extra_labels=dict(alert.labels),
    )


def _slo_alert_rules(owner: Owner, kind: str, objective: float) -> list[Rule]:
    """One rule per window pair, sharing the alert name and told apart by window labels.

    Overrides apply to all four: ``disabled``, ``for``, ``severity`` and ``labels``; a
    ``threshold`` override is ignored, since the thresholds follow from the objective.
    """
    sel = selector(owner, APP)
    budget = error_budget(objective)
    rules = []
    for burn in burn_windows(owner.spec.slos.window):
        factor, condition = burn_condition(burn.factor, budget)
        expr = (
            f"{slo_error_ratio_record(kind, burn.long)}{{{sel}}} {condition}\nand\n"
            f"{slo_error_ratio_record(kind, burn.short)}{{{sel}}} {condition}"
        )
        rule = _alert_rule(
            owner.spec.alerts,
            SLO_ALERTS[kind],
            expr,
            burn.for_,
            burn.severity,
            f"{kind.capitalize()} error budget is burning too fast",
            f"The {kind} SLO ({_format_threshold(objective)}% over "
            f"{owner.spec.slos.window}) of {{{{ $labels.job }}}} in {{{{ $labels.namespace }}}} "
            f"burns its error budget {_format_threshold(factor)}x faster than sustainable "
            f"over the last {burn.long} and {burn.short}.",
            extra_labels={"slo": kind, "long_window": burn.long, "short_window": burn.short},
        )
        if rule is not None:
            rules.append(rule)
    return rules


def _group(name: str, rules: list[Rule]) -> list[Group]:
    return [{"name": name, "rules": rules}] if rules else []


def _owned_alerts(owner: Owner, groups: list[Group], dashboard_urls: Mapping[str, str]) -> None:
    """Label every alert with its resource (what its AlertmanagerConfig matches on) and link
    the dashboard panel that explains it."""
    for rule in (rule for group in groups for rule in group["rules"] if "alert" in rule):
        rule["labels"][ALERT_OWNER_LABEL] = owner.name
        if rule["alert"] in dashboard_urls:
            rule["annotations"]["dashboard_url"] = dashboard_urls[rule["alert"]]


def rule_groups(owner: Owner, dashboard_urls: Mapping[str, str] | None = None) -> list[Group]:
    """The PrometheusRule ``spec.groups`` for ``owner``: ours, then the user's own
    (``extraRuleGroups``); ``dashboard_urls`` by alert name."""
    return _our_rule_groups(owner, dashboard_urls) + _users_rule_groups(owner)


def _users_rule_groups(owner: Owner) -> list[Group]:
    """The user's groups as written, except that their alerts carry the resource label as
    ours do, so that ``routing`` routes them too, and every rule the resource's namespace.

    The namespace label overrides whatever the expression yields (as prometheus-operator's
    enforcedNamespaceLabel would): without it, a ``label_replace`` could make a series or an
    alert of another namespace, and page or silence another tenant's receivers. No dashboard
    link: no panel explains them."""
    groups = [
        group.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
        for group in owner.spec.extra_rule_groups
    ]
    for rule in (rule for group in groups for rule in group["rules"]):
        rule["labels"] = {**rule.get("labels", {}), "namespace": owner.namespace}
        if "alert" in rule:
            rule["labels"][ALERT_OWNER_LABEL] = owner.name
    return groups


def _our_rule_groups(owner: Owner, dashboard_urls: Mapping[str, str] | None) -> list[Group]:
    """The groups the operator writes for ``owner``.

    Recording rules are always present for the enabled components (dashboards read them);
    ``alerts.enabled: false`` drops only alerts. Alerts of disabled exporters are omitted.
    """
    spec = owner.spec
    components = _enabled_components(spec)
    prefix = f"jewelry.{owner.namespace}.{owner.name}"
    groups: list[Group] = []
    slos = slo_objectives(spec) if APP in components else {}
    if APP in components:
        groups += _group(f"{prefix}.app.recording", _app_recording_rules(selector(owner, APP)))
    if slos:
        sel = selector(owner, APP)
        groups += _group(
            f"{prefix}.slo.recording",
            [
                {
                    "record": slo_error_ratio_record(kind, window),
                    "expr": _slo_error_ratio(spec, kind, sel, window),
                }
                for kind in slos
                for window in slo_windows(spec.slos.window)
            ]
            + [
                rule
                for kind, objective in slos.items()
                for rule in _slo_budget_rules(owner, kind, objective)
            ],
        )
    groups += _group(f"{prefix}.scrape-limits", _sample_limit_rules(owner))
    if not spec.alerts.enabled:
        return groups
    for component in components:
        matchers = selector(owner, component)
        rules = [
            rule
            for alert in CATALOG
            if alert.component == component
            and (rule := _catalog_rule(spec.alerts, alert, matchers)) is not None
        ]
        groups += _group(f"{prefix}.{component}.alerts", rules)
    slo_rules = [
        rule
        for kind, objective in slos.items()
        for rule in _slo_alert_rules(owner, kind, objective)
    ]
    groups += _group(f"{prefix}.slo.alerts", slo_rules)
    _owned_alerts(owner, groups, dashboard_urls or {})
    return groups
