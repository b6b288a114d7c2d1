"""The JewelryMonitoring spec as a typed model: the one source of truth.

The CRD's OpenAPI schema, its defaults and its validation are generated from these classes
(see ``crd.py``); handlers only ever see a parsed, validated ``JewelryMonitoringSpec``.
The app is scraped every 15s at ``/metrics`` by default, exporters every 30s. Every field
has a description: it is what ``kubectl explain`` shows and what the CRD reference lists (a
test fails on a field without one). Checks that a schema cannot express (one field compared
with another, an alert name that must exist) live in ``semantic_problems``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

from jewelry_monitoring.validation import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    METRIC_NAME,
    MapKind,
    annotation_problems,
    annotations_size_problem,
    cidr_problem,
    label_map_problems,
    port_problem,
    prometheus_label_problems,
    qualified_name_problem,
    string_maps,
    url_host_port,
)

API_GROUP = "monitoring.jewelry.io"
API_VERSION = "v1alpha1"
KIND = "JewelryMonitoring"
PLURAL = "jewelrymonitorings"
SINGULAR = "jewelrymonitoring"
SHORT_NAMES = ["jm", "jmon"]

# prometheus-operator's own Duration pattern, so whatever we accept it accepts too.
DURATION_PATTERN = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
Duration = Annotated[str, StringConstraints(pattern=DURATION_PATTERN)]
# String maps by what they hold: each is checked as its kind says (see string_map_problems).
ObjectLabels = Annotated[dict[str, str], MapKind.OBJECT_LABELS]
Selector = Annotated[dict[str, str], MapKind.SELECTOR]
ObjectAnnotations = Annotated[dict[str, str], MapKind.ANNOTATIONS]
AlertLabels = Annotated[dict[str, str], MapKind.ALERT_LABELS]
RuleAnnotations = Annotated[dict[str, str], MapKind.RULE_ANNOTATIONS]
Quantities = Annotated[dict[str, str], MapKind.QUANTITIES]
# Raw Kubernetes/prometheus-operator structures passed through unchanged (relabel configs,
# tolerations): the server validates them against prometheus-operator's own schema.
PassThrough = dict[str, Any]

# The app's request-latency histogram buckets (PROMETHEUS_LATENCY_BUCKETS in the app
# settings). A latency SLO threshold must be one of them:
# a histogram can only count "requests faster than X" exactly at a bucket boundary.
LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
    25.0,
    50.0,
    75.0,
)

_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(duration: str) -> float:
    """Seconds in a Prometheus duration such as ``1m30s``."""
    return sum(
        int(amount) * _DURATION_UNITS[unit]
        for amount, unit in re.findall(r"([0-9]+)(ms|y|w|d|h|m|s)", duration)
    )


# A Kubernetes resource.Quantity: a decimal number, then a binary or decimal SI suffix or an
# exponent ("0.5", "500m", "1Gi", "1e3"). The API server stores it in canonical form
# ("0.5" -> "500m", "1024Mi" -> "1Gi"), so quantities compare by value, never as text.
_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))([eE][+-]?[0-9]+|[a-zA-Z]*)$")
# Suffix -> power of ten, or of two for the binary ones.
_DECIMAL_SUFFIXES = {
    "n": -9,
    "u": -6,
    "m": -3,
    "": 0,
    "k": 3,
    "M": 6,
    "G": 9,
    "T": 12,
    "P": 15,
    "E": 18,
}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}


def quantity_value(text: str) -> Decimal | None:
    """The value of a Kubernetes quantity, or None if ``text`` is not one."""
    found = _QUANTITY.match(text)
    if not found:
        return None
    number, suffix = found.groups()
    try:
        if suffix in _BINARY_SUFFIXES:
            return Decimal(number) * Decimal(2) ** _BINARY_SUFFIXES[suffix]
        if suffix in _DECIMAL_SUFFIXES:
            return Decimal(number) * Decimal(10) ** _DECIMAL_SUFFIXES[suffix]
        if suffix[:1] in ("e", "E"):
            return Decimal(number) * Decimal(10) ** int(suffix[1:])
    except (InvalidOperation, ValueError):
        return None
    return None


class SpecModel(BaseModel):
    """Base for spec classes: camelCase in YAML, snake_case in Python, immutable, strict keys."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SecretKeyRef(SpecModel):
    """A key of a Secret in the CR's namespace. The operator never reads the value."""

    name: str = Field(
        min_length=1, max_length=253, pattern=f"^{DNS_SUBDOMAIN}$", description="Secret name."
    )
    key: str = Field(
        min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$", description="Key within it."
    )


class BasicAuth(SpecModel):
    """HTTP basic auth for scraping a protected /metrics, both parts in Secrets."""

    username: SecretKeyRef = Field(description="Secret key holding the user name.")
    password: SecretKeyRef = Field(description="Secret key holding the password.")


class TLSConfig(SpecModel):
    """TLS settings for scraping an HTTPS metrics endpoint."""

    server_name: str | None = Field(None, description="Server name to verify the cert against.")
    insecure_skip_verify: bool = Field(
        False, description="Do not verify the server's certificate (testing only)."
    )
    ca: SecretKeyRef | None = Field(None, description="CA bundle to verify the server with.")


class Resources(SpecModel):
    """Container requests and limits, as in a Pod spec."""

    requests: Quantities = Field(
        default_factory=dict,
        description="Amounts reserved, by resource (cpu, memory, ephemeral-storage), e.g. 50m.",
    )
    limits: Quantities = Field(
        default_factory=dict,
        description="Most the container may use, by resource; not below its request.",
    )


# The scrape limits' defaults, measured with room to spare: the shop (15 views) exposes about
# 650 samples after the load generator's traffic, and django-prometheus grows by about 45 per
# view (methods x latency buckets), so 20,000 holds an app of some 400 views; the exporters'
# default collectors stay far below it on a database of a few hundred tables.
DEFAULT_SAMPLE_LIMIT = 20_000


class ScrapeLimits(SpecModel):
    """Limits on each scrape of a target (the ServiceMonitor's sampleLimit, labelLimit,
    labelNameLengthLimit, labelValueLengthLimit): a scrape past any of them is refused as a
    whole, its target shows down with the reason as its last error, so one runaway label
    cannot grow Prometheus's memory without bound. 0 turns a limit off. The alert
    TargetNearSampleLimit warns before sampleLimit is reached (a Prometheus's own
    enforcedSampleLimit, when lower, wins)."""

    sample_limit: int = Field(
        DEFAULT_SAMPLE_LIMIT,
        ge=0,
        description="Samples one scrape may return (after metricRelabelings); 0: no limit.",
    )
    label_limit: int = Field(
        40, ge=0, description="Labels per sample, target labels included; 0: no limit."
    )
    label_name_length_limit: int = Field(
        128, ge=0, description="Characters of a label name; 0: no limit."
    )
    label_value_length_limit: int = Field(
        2048, ge=0, description="Characters of a label value; 0: no limit."
    )


class AppSpec(SpecModel):
    """Where the Django pods are and how Prometheus scrapes their django-prometheus endpoint."""

    enabled: bool = Field(True, description="Create the app's metrics Service and ServiceMonitor.")
    pod_selector: Annotated[Selector, Field(min_length=1)] = Field(
        description="Labels of the Django pods (matchLabels)."
    )
    port: int | str = Field(
        8000, description="The pods' metrics port, by number or container port name."
    )
    path: str = Field("/metrics", pattern=r"^/", description="HTTP path of the metrics.")
    interval: Duration = Field("15s", description="How often Prometheus scrapes the app.")
    scrape_timeout: Duration = Field(
        "10s", description="How long one scrape may take; at most the interval."
    )
    scheme: Literal["http", "https"] = Field("http", description="Scheme of the scrape.")
    basic_auth: BasicAuth | None = Field(
        None, description="Scrape with basic auth; excludes bearerTokenSecret."
    )
    bearer_token_secret: SecretKeyRef | None = Field(
        None,
        description="Secret key holding the bearer token Prometheus sends (the app's "
        "PROMETHEUS_METRICS_BEARER_TOKEN_FILE); excludes basicAuth.",
    )
    tls: TLSConfig | None = Field(None, description="TLS settings; needs scheme https.")
    relabelings: list[PassThrough] = Field(
        default_factory=list,
        description="prometheus-operator RelabelConfigs applied to the targets before the "
        "scrape, passed to the ServiceMonitor unchanged.",
    )
    metric_relabelings: list[PassThrough] = Field(
        default_factory=list,
        description="prometheus-operator RelabelConfigs applied to the scraped samples before "
        "they are stored, passed to the ServiceMonitor unchanged.",
    )
    scrape_limits: ScrapeLimits = Field(
        default_factory=ScrapeLimits,
        json_schema_extra={"default": {}},
        description="Cardinality guard: limits on each scrape of the app's pods.",
    )


class NetworkTarget(SpecModel):
    """Where an exporter connects, for its NetworkPolicy's egress rule (DNS is always allowed).

    Without it, the operator derives the target from the exporter's own settings (see
    ``builders/exporters.py``); set it when that cannot be known (a DSN in a Secret) or is
    too wide (a hostname outside the cluster: any address on the port).
    """

    pod_selector: Selector = Field(
        default_factory=dict, description="Labels of the target's pods; empty: any pod."
    )
    namespace: str | None = Field(
        None,
        max_length=63,
        pattern=f"^{DNS_LABEL}$",
        description="Namespace of those pods; defaults to this resource's.",
    )
    cidrs: list[str] = Field(
        default_factory=list,
        description="Address ranges of a target outside the cluster, instead of pods.",
    )
    ports: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        default_factory=list,
        description="The target's ports as the pods listen (after a Service's translation); "
        "defaults to the port the exporter's settings name.",
    )


EXPORTER_IMAGE = (
    "The exporter's image: any tag of the pinned default's repository, or an image the "
    "chart's exporterImageAllowlist allows."
)


class ExporterSpec(SpecModel):
    """What every exporter shares. Each subclass adds its connection settings."""

    enabled: bool = Field(
        False,
        description="Run this exporter: a Deployment, Service, ServiceMonitor and NetworkPolicy.",
    )
    image: str = Field("", description=EXPORTER_IMAGE)
    interval: Duration = Field("30s", description="How often Prometheus scrapes the exporter.")
    scrape_timeout: Duration = Field(
        "10s", description="How long one scrape may take; at most the interval."
    )
    resources: Resources | None = Field(
        None,
        description="The exporter container's requests and limits; defaults to small ones "
        "suited to the exporter. ephemeral-storage 16Mi/64Mi is added unless given.",
    )
    extra_args: list[str] = Field(
        default_factory=list, description="Command-line flags appended to the exporter's."
    )
    node_selector: Selector = Field(
        default_factory=dict, description="Node labels the exporter's pod must run on."
    )
    tolerations: list[PassThrough] = Field(
        default_factory=list, description="Pod tolerations, as in a Pod spec."
    )
    scrape_limits: ScrapeLimits = Field(
        default_factory=ScrapeLimits,
        json_schema_extra={"default": {}},
        description="Cardinality guard: limits on each scrape of the exporter.",
    )
    network_target: NetworkTarget | None = Field(
        None,
        description="Where the exporter connects, for its NetworkPolicy's egress; unset, it "
        "is derived from the exporter's settings (a Service name: the pods of its namespace; "
        "an IP: that address; another host: any address, on the port; a DSN or broker URL in "
        "a Secret: any address, on the usual ports).",
    )


class PostgresExporterSpec(ExporterSpec):
    """postgres_exporter: the database's health, connections, locks and sizes."""

    image: str = Field(
        "quay.io/prometheuscommunity/postgres-exporter:v0.17.1", description=EXPORTER_IMAGE
    )
    data_source: SecretKeyRef | None = Field(
        None, description="Secret key holding the PostgreSQL DSN (DATA_SOURCE_NAME)."
    )


# The schemes an exporter's address may have, and the port each implies.
REDIS_SCHEMES = {"redis": 6379, "rediss": 6379}
NGINX_SCHEMES = {"http": 80, "https": 443}


class RedisExporterSpec(ExporterSpec):
    """redis_exporter: the cache's memory, hits, misses and clients."""

    image: str = Field("oliver006/redis_exporter:v1.74.0", description=EXPORTER_IMAGE)
    address: str = Field(
        "redis://redis:6379",
        min_length=1,
        description="Redis URL (redis:// or rediss://, host and port; no password in it).",
    )
    password: SecretKeyRef | None = Field(
        None, description="Secret key holding the Redis password, if it has one."
    )


class NginxExporterSpec(ExporterSpec):
    """nginx-prometheus-exporter: nginx's connections and requests from its stub_status."""

    image: str = Field("nginx/nginx-prometheus-exporter:1.4.2", description=EXPORTER_IMAGE)
    scrape_uri: str = Field(
        "http://nginx:8080/stub_status",
        pattern=r"^https?://",
        description="URL of nginx's stub_status page.",
    )


class CeleryExporterSpec(ExporterSpec):
    """celery-exporter: Celery tasks and workers, from the broker's task events."""

    image: str = Field("danihodovic/celery-exporter:0.10.14", description=EXPORTER_IMAGE)
    broker_url: SecretKeyRef | None = Field(None, description="Secret key holding the broker URL.")


class ExportersSpec(SpecModel):
    """Exporters the operator runs beside the app, each off until enabled."""

    postgres: PostgresExporterSpec = Field(
        default_factory=PostgresExporterSpec,
        json_schema_extra={"default": {}},
        description="PostgreSQL exporter; needs dataSource.",
    )
    redis: RedisExporterSpec = Field(
        default_factory=RedisExporterSpec,
        json_schema_extra={"default": {}},
        description="Redis exporter, for the cache (and a Redis broker).",
    )
    nginx: NginxExporterSpec = Field(
        default_factory=NginxExporterSpec,
        json_schema_extra={"default": {}},
        description="nginx exporter, for the proxy in front of the app.",
    )
    celery: CeleryExporterSpec = Field(
        default_factory=CeleryExporterSpec,
        json_schema_extra={"default": {}},
        description="Celery exporter; needs brokerUrl, and task events enabled in Celery.",
    )

    def enabled(self) -> dict[str, ExporterSpec]:
        """The enabled exporters by name, in a stable order."""
        return {name: getattr(self, name) for name in EXPORTER_NAMES if getattr(self, name).enabled}


EXPORTER_NAMES = ("postgres", "redis", "nginx", "celery")

Severity = Literal["critical", "warning", "info"]


class AlertOverride(SpecModel):
    """Adjustments of one alert, keyed by its name in alerts.overrides."""

    disabled: bool = Field(False, description="Leave the alert out of the rules.")
    threshold: float | None = Field(None, description="Replaces the alert's default threshold.")
    for_: Duration | None = Field(None, alias="for", description="Replaces the alert's `for`.")
    severity: Severity | None = Field(None, description="Replaces the alert's severity.")
    labels: AlertLabels = Field(
        default_factory=dict, description="Extra labels on this alert (e.g. team)."
    )


class AlertsSpec(SpecModel):
    """The alerting rules of the PrometheusRule, and how to adjust them."""

    enabled: bool = Field(
        True, description="Include the alerts (recording rules are made either way)."
    )
    runbook_url_base: str | None = Field(
        None,
        description="runbook_url of an alert is <base>/<alertname lower-cased>; unset, the "
        "operator's (the chart's runbookUrlBase: this project's runbooks).",
    )
    labels: AlertLabels = Field(default_factory=dict, description="Extra labels on every alert.")
    min_request_rate: float = Field(
        0.1,
        ge=0,
        description=(
            "HighErrorRate fires only while the app answers more than this many requests per "
            "second: on a quiet app one 5xx is a large share and must not page."
        ),
    )
    overrides: dict[str, AlertOverride] = Field(
        default_factory=dict,
        description="Adjustments by alert name (e.g. HighErrorRate); an unknown name makes "
        "the resource invalid.",
    )


class AvailabilitySLO(SpecModel):
    """Share of requests answered without a 5xx, in percent."""

    objective: float = Field(gt=50, lt=100, description="Target share in percent, e.g. 99.9.")


class LatencySLO(SpecModel):
    """Share of requests answered faster than ``thresholdSeconds``, in percent."""

    objective: float = Field(gt=50, lt=100, description="Target share in percent, e.g. 99.")
    threshold_seconds: float = Field(
        0.5, gt=0, description="Must be one of the app's latency histogram buckets."
    )


class SLOSpec(SpecModel):
    """Service level objectives: recording rules plus multi-window multi-burn-rate alerts."""

    window: Literal["7d", "28d", "30d"] = Field(
        "30d", description="The period the objectives hold over (the error budget's window)."
    )
    availability: AvailabilitySLO | None = Field(
        None, description="Share of requests answered without a 5xx; unset, no such SLO."
    )
    latency: LatencySLO | None = Field(
        None, description="Share of requests answered in time; unset, no such SLO."
    )


class DashboardsSpec(SpecModel):
    """Per-resource Grafana dashboards as ConfigMaps, found by the Grafana dashboard sidecar.

    Off by default: the chart ships one set of dashboards for every JewelryMonitoring, with
    namespace and job chosen in Grafana. Per-resource dashboards are an opt-in.
    """

    enabled: bool = Field(
        False,
        description=(
            "Also create this resource's own dashboards (file names and uids unique per "
            "resource); the chart's shared dashboards cover every resource already."
        ),
    )
    labels: ObjectLabels = Field(
        default_factory=lambda: {"grafana_dashboard": "1"},
        description="Labels on the ConfigMaps; the Grafana sidecar finds them by these.",
    )
    annotations: ObjectAnnotations = Field(default_factory=dict, description="Annotations on them.")
    folder: str = Field(
        "Jewelry",
        description="Grafana folder, set through folderAnnotation; the sidecar reads it only "
        "when configured to (kube-prometheus-stack: "
        "grafana.sidecar.dashboards.folderAnnotation).",
    )
    folder_annotation: str = Field(
        "grafana_folder", description="Annotation key the sidecar reads the folder from."
    )
    multi_cluster: bool = Field(
        False,
        description="Show the dashboards' cluster variable: for a Grafana data source holding "
        "several clusters' series told apart by a `cluster` label (Thanos, Mimir, "
        "federation). Hidden otherwise (one cluster), as kube-prometheus-stack does.",
    )
    grafana_url: str | None = Field(
        None,
        pattern=r"^https?://",
        description=(
            "Grafana's base URL. When set, every alert carries a dashboard_url annotation "
            "linking the panel that explains it: in this resource's own dashboards when "
            "`enabled`, else in the chart's shared ones with namespace and job preset."
        ),
    )


# --- Alert routing (an AlertmanagerConfig) ----------------------------------------------


class SlackReceiver(SpecModel):
    """A Slack incoming webhook."""

    api_url: SecretKeyRef = Field(description="Secret key holding the Slack webhook URL.")
    channel: str | None = Field(None, description="Channel, e.g. #shop; unset: the webhook's.")


class EmailReceiver(SpecModel):
    """E-mail through an SMTP server."""

    to: str = Field(min_length=1, description="Recipient address(es), comma-separated.")
    from_: str = Field(alias="from", min_length=1, description="Sender address.")
    smarthost: str = Field(pattern=r"^[^:]+:[0-9]+$", description="SMTP host:port.")
    auth_username: str | None = Field(None, description="SMTP user name, if it needs one.")
    auth_password: SecretKeyRef | None = Field(
        None, description="Secret key holding the SMTP password."
    )
    require_tls: bool = Field(True, description="Refuse to send unless STARTTLS succeeds.")


class PagerDutyReceiver(SpecModel):
    """A PagerDuty service, through the Events API v2."""

    routing_key: SecretKeyRef = Field(description="Secret key holding the Events API v2 key.")


class WebhookReceiver(SpecModel):
    """Alertmanager's webhook: a JSON POST of the notification."""

    url: SecretKeyRef = Field(description="Secret key holding the URL (it often embeds a token).")


class MSTeamsReceiver(SpecModel):
    """A Teams Workflows webhook (AlertmanagerConfig msteamsv2Configs, Alertmanager >= 0.28):
    Microsoft retired the Office 365 connectors that msteamsConfigs posts to."""

    webhook_url: SecretKeyRef = Field(description="Secret key holding the Workflows URL.")


class ReceiverSpec(SpecModel):
    """Where notifications go. Several integrations notify together; none discards."""

    name: str = Field(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        max_length=63,
        description="Unique name, used by receiver and routes[].receiver.",
    )
    send_resolved: bool = Field(True, description="Also notify when the alert resolves.")
    slack: SlackReceiver | None = Field(None, description="Post to Slack.")
    email: EmailReceiver | None = Field(None, description="Send an e-mail.")
    pagerduty: PagerDutyReceiver | None = Field(None, description="Open a PagerDuty incident.")
    webhook: WebhookReceiver | None = Field(None, description="POST to a webhook.")
    msteams: MSTeamsReceiver | None = Field(None, description="Post to Microsoft Teams.")


# The integrations a receiver may use, by field name.
RECEIVER_INTEGRATIONS = ("slack", "email", "pagerduty", "webhook", "msteams")


class RouteSpec(SpecModel):
    """Alerts matching every given list (any value within a list) go to its receiver."""

    receiver: str = Field(description="Name of the receiver the matching alerts go to.")
    severities: list[Severity] = Field(
        default_factory=list, description="Match alerts of these severities."
    )
    alert_names: list[str] = Field(
        default_factory=list,
        description="Match these alerts: ours, or those of extraRuleGroups.",
    )
    teams: list[str] = Field(
        default_factory=list, description="Values of the alerts' `team` label (alerts.labels)."
    )
    continue_: bool = Field(
        False, alias="continue", description="Keep matching the routes after this one."
    )
    group_by: list[str] | None = Field(None, description="Replaces routing.groupBy here.")
    group_wait: Duration | None = Field(None, description="Replaces routing.groupWait here.")
    group_interval: Duration | None = Field(
        None, description="Replaces routing.groupInterval here."
    )
    repeat_interval: Duration | None = Field(
        None, description="Replaces routing.repeatInterval here."
    )


class InhibitionSpec(SpecModel):
    """Inhibit rules of the AlertmanagerConfig."""

    enabled: bool = Field(True, description="Mute warnings while the matching critical fires.")
    equal: list[str] = Field(
        default_factory=lambda: ["alertname", "namespace", "job"],
        description="Labels a critical and a warning must share to match.",
    )


class RoutingSpec(SpecModel):
    """This resource's alerts, routed by an AlertmanagerConfig that only sees them."""

    alertmanager_config_labels: ObjectLabels = Field(
        default_factory=dict,
        description="Labels on the AlertmanagerConfig so that an Alertmanager's "
        "alertmanagerConfigSelector selects it.",
    )
    receivers: Annotated[list[ReceiverSpec], Field(min_length=1)] = Field(
        description="Where notifications can go; routes name them."
    )
    receiver: str = Field(description="Receiver of the alerts no route matches.")
    routes: list[RouteSpec] = Field(
        default_factory=list,
        description="Tried in order; the first that matches wins unless it has continue.",
    )
    group_by: list[str] = Field(
        default_factory=lambda: ["alertname", "namespace", "job"],
        description="Labels that group alerts into one notification ('...': every label).",
    )
    group_wait: Duration = Field(
        "30s", description="How long a new group waits for more alerts before notifying."
    )
    group_interval: Duration = Field(
        "5m", description="How long before notifying of alerts added to a group."
    )
    repeat_interval: Duration = Field(
        "4h", description="How long before repeating a notification still firing."
    )
    inhibition: InhibitionSpec = Field(
        default_factory=InhibitionSpec,
        json_schema_extra={"default": {}},
        description="Mute a warning while a critical with the same labels fires.",
    )


# The shortest targets check interval: the check reads Prometheus and the API, never faster.
MIN_TARGETS_CHECK_SECONDS = 10


class PrometheusRef(SpecModel):
    """A prometheus-operator Prometheus resource, read through its governing Service
    ``prometheus-operated`` (port 9090, its routePrefix)."""

    namespace: str = Field(
        max_length=63, pattern=f"^{DNS_LABEL}$", description="The Prometheus' namespace."
    )
    name: str = Field(
        max_length=253, pattern=f"^{DNS_SUBDOMAIN}$", description="The Prometheus' name."
    )


class PrometheusSpec(SpecModel):
    """The Prometheus that scrapes this resource's targets and loads its rules, for the
    conditions that say whether monitoring works (TargetsHealthy, RulesLoaded, AlertsCanFire,
    ErrorBudgetLeft) and for ``status.slos``.

    The operator reads its HTTP API (reads only) every ``checkInterval`` while the resource
    exists. It asks only a Prometheus the cluster admin allows: a Prometheus resource, or a
    URL listed in the chart (``prometheus.url``, ``prometheus.allowedUrls``). Without
    ``url`` and ``prometheusRef``, the chart's ``prometheus`` default is asked.
    """

    url: str | None = Field(
        None,
        pattern=r"^https?://[^/?#]+",
        description=(
            "Base URL of its HTTP API as the operator reaches it (plus a routePrefix if it has "
            "one); it must be one of the chart's prometheus.url and prometheus.allowedUrls."
        ),
    )
    prometheus_ref: PrometheusRef | None = Field(
        None, description="A prometheus-operator Prometheus resource (instead of url)."
    )
    check_interval: Duration = Field(
        "1m", description="How often to check the targets (at least 10s)."
    )


class RuleSpec(SpecModel):
    """One alerting (alert) or recording (record) rule, as in a Prometheus rule file."""

    alert: str | None = Field(None, description="Alert name; exclusive with record.")
    record: str | None = Field(
        None, description="Name of the series a recording rule writes; exclusive with alert."
    )
    expr: str = Field(min_length=1, description="PromQL; checked by Prometheus, not here.")
    for_: Duration | None = Field(
        None, alias="for", description="How long the condition holds before the alert fires."
    )
    # Spelled as in Prometheus' rule files and prometheus-operator's PrometheusRule.
    keep_firing_for: Duration | None = Field(
        None,
        alias="keep_firing_for",
        description="How long the alert keeps firing after its condition clears.",
    )
    labels: AlertLabels = Field(default_factory=dict, description="Labels added to the result.")
    annotations: RuleAnnotations = Field(
        default_factory=dict, description="Alert annotations (summary, description...)."
    )


class RuleGroupSpec(SpecModel):
    """A rule group of the user's own, appended to the resource's PrometheusRule."""

    name: str = Field(min_length=1, description="Unique; names beginning 'jewelry.' are ours.")
    interval: Duration | None = Field(
        None, description="Evaluation interval; unset: Prometheus' global one."
    )
    rules: Annotated[list[RuleSpec], Field(min_length=1)] = Field(
        description="The group's rules, evaluated in order."
    )


# Our rule groups are named jewelry.<namespace>.<resource>.<part>: the user's may not be.
OUR_GROUP_PREFIX = "jewelry."


class PeerSelector(SpecModel):
    """Pods by labels, in namespaces by labels (``namespaceSelector`` unset or ``{}``: every
    namespace, as in Kubernetes)."""

    pod_selector: Annotated[Selector, Field(min_length=1)] = Field(
        description="Labels of the pods (matchLabels)."
    )
    namespace_selector: Selector | None = Field(
        None, description="Labels of their namespaces (matchLabels); unset or {}: every namespace."
    )


# kube-prometheus-stack's Prometheus pods, wherever they run; the cluster DNS as kubeadm,
# kind and most distributions label it.
PROMETHEUS_PODS: dict[str, Any] = {"app.kubernetes.io/name": "prometheus"}
DNS_PODS: dict[str, Any] = {"k8s-app": "kube-dns"}
DNS_NAMESPACE: dict[str, Any] = {"kubernetes.io/metadata.name": "kube-system"}


class NetworkPolicySpec(SpecModel):
    """One NetworkPolicy per exporter: ingress only from Prometheus to the metrics port,
    egress only to the exporter's target and to DNS. Enforced only by a policy-capable CNI."""

    enabled: bool = Field(True, description="Create the exporters' NetworkPolicies.")
    prometheus: PeerSelector = Field(
        default_factory=lambda: PeerSelector(pod_selector=PROMETHEUS_PODS),
        json_schema_extra={"default": {"podSelector": PROMETHEUS_PODS}},
        description="The Prometheus pods allowed to scrape the exporters.",
    )
    dns: PeerSelector = Field(
        default_factory=lambda: PeerSelector(
            pod_selector=DNS_PODS, namespace_selector=DNS_NAMESPACE
        ),
        json_schema_extra={
            "default": {"podSelector": DNS_PODS, "namespaceSelector": DNS_NAMESPACE}
        },
        description="The cluster DNS pods (port 53, UDP and TCP).",
    )


class JewelryMonitoringSpec(SpecModel):
    """Desired monitoring for one Django deployment of the Jewelry SaaS platform."""

    app: AppSpec
    monitor_labels: ObjectLabels = Field(
        default_factory=dict,
        description=(
            "Labels on every ServiceMonitor and PrometheusRule so that a Prometheus selects "
            "them; kube-prometheus-stack selects `release: <its release name>`."
        ),
    )
    common_labels: ObjectLabels = Field(default_factory=dict, description="Added to every object.")
    common_annotations: ObjectAnnotations = Field(
        default_factory=dict, description="Added to every object."
    )
    exporters: ExportersSpec = Field(
        default_factory=ExportersSpec,
        json_schema_extra={"default": {}},
        description="Exporters for the app's PostgreSQL, Redis, nginx and Celery.",
    )
    alerts: AlertsSpec = Field(
        default_factory=AlertsSpec,
        json_schema_extra={"default": {}},
        description="The alerts of the PrometheusRule.",
    )
    slos: SLOSpec = Field(default_factory=SLOSpec, json_schema_extra={"default": {}})
    dashboards: DashboardsSpec = Field(
        default_factory=DashboardsSpec, json_schema_extra={"default": {}}
    )
    network_policy: NetworkPolicySpec = Field(
        default_factory=NetworkPolicySpec, json_schema_extra={"default": {}}
    )
    extra_rule_groups: list[RuleGroupSpec] = Field(
        default_factory=list,
        description=(
            "The user's own alerting and recording rule groups, appended to ours. Their alerts "
            "get the label jewelry_monitoring=<this resource's name>, as ours, so that routing "
            "routes them (its alertNames may name them)."
        ),
    )
    routing: RoutingSpec | None = Field(
        None, description="Alert routing through Alertmanager; unset, nothing is routed."
    )
    prometheus: PrometheusSpec | None = Field(
        None, description="The Prometheus to read targets from; unset, TargetsHealthy is Unknown."
    )


# Labels the operator sets on every child and relies on to find and select them (the owner
# label, the pod selector, the child watch's filter): a user's label map may not set them.
# ``app.kubernetes.io/part-of`` is not among them: there the user's commonLabels value wins.
OPERATOR_LABELS = frozenset(
    {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
        "app.kubernetes.io/managed-by",
        f"{API_GROUP}/owner",
    }
)
# The label every alert of a resource carries, its value the resource's name: its
# AlertmanagerConfig matches on it, so that it routes this resource's alerts and no others.
ALERT_OWNER_LABEL = "jewelry_monitoring"
# What tells one resource's alerts from another's: its AlertmanagerConfig matches the owner
# label, prometheus-operator adds a ``namespace`` matcher, and routes, groups and inhibit
# rules compare alertname, namespace and job. A rule label may not set them, or a resource in
# one namespace could page (or silence) another's receivers. ``team`` and ``severity`` stay
# the user's: routes match them by design, within the resource's own alerts.
RESERVED_ALERT_LABELS = frozenset({ALERT_OWNER_LABEL, "namespace", "job", "alertname"})


# Where this project's runbooks are published (charts/jewelry-monitoring/runbooks: one
# directory per alert, whose README the repository's host shows): an alert's runbook_url is
# <base>/<alert name lower-cased>. The chart's runbookUrlBase (JM_RUNBOOK_URL_BASE) replaces
# it, for a fork or a mirror; a resource's alerts.runbookUrlBase replaces both.
DEFAULT_RUNBOOK_URL_BASE = (
    "https://github.com/jewelry-monitoring/jewelry-monitoring/tree/main/charts/"
    "jewelry-monitoring/runbooks"
)
# The schema's default before the runbooks existed, stored in resources made then: a
# reserved domain that never served a page, so it counts as unset.
RETIRED_RUNBOOK_URL_BASE = "https://runbooks.jewelry.example/alerts"


def with_operator_defaults(
    spec: JewelryMonitoringSpec, runbook_url_base: str = ""
) -> JewelryMonitoringSpec:
    """``spec`` with what it leaves to the operator's settings (empty: this project's
    defaults) filled in."""
    alerts = spec.alerts
    if alerts.runbook_url_base not in (None, RETIRED_RUNBOOK_URL_BASE):
        return spec
    base = runbook_url_base or DEFAULT_RUNBOOK_URL_BASE
    return spec.model_copy(update={"alerts": alerts.model_copy(update={"runbook_url_base": base})})


# Which secret each exporter cannot run without, and the field that names it.
REQUIRED_EXPORTER_SECRETS = {"postgres": "data_source", "celery": "broker_url"}


def image_repository(reference: str) -> str:
    """The fully qualified repository of an image reference, tag and digest removed.

    Docker Hub's short names are expanded the way container runtimes do, so that
    ``oliver006/redis_exporter`` and ``docker.io/oliver006/redis_exporter`` are one repository
    and an allowlist cannot be sidestepped by spelling a name differently.
    """
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    if ":" in name[slash + 1 :]:
        name = name[: slash + 1] + name[slash + 1 :].split(":", 1)[0]
    return _qualified(name)


def _qualified(name: str) -> str:
    first, _, rest = name.partition("/")
    if not rest:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name
    return f"docker.io/{name}"


def default_image_repositories() -> tuple[str, ...]:
    """The repositories of the pinned default images: always allowed, any tag."""
    defaults = ExportersSpec()
    return tuple(image_repository(getattr(defaults, name).image) for name in EXPORTER_NAMES)


def image_allowed(reference: str, allowed: Sequence[str]) -> bool:
    """Whether an image lies in an allowed repository, or under an allowed prefix ending in /.

    A repository entry matches that repository exactly, never a longer name that merely
    starts with it (``…/postgres-exporter`` does not allow ``…/postgres-exporter-evil``).
    """
    repository = image_repository(reference)
    for entry in (*default_image_repositories(), *allowed):
        if entry.endswith("/"):
            # Qualify the prefix as if it were a name under it, then cut that name off again.
            if repository.startswith(_qualified(entry + "x")[:-1]):
                return True
        elif repository == _qualified(entry):
            return True
    return False


def image_problems(spec: JewelryMonitoringSpec, allowed: Sequence[str]) -> list[str]:
    """Enabled exporters whose ``image`` lies outside the operator's allowlist.

    Whoever may create a JewelryMonitoring chooses what runs in its namespace; the cluster
    admin chooses (in the chart's values) where that may come from.
    """
    return [
        f"exporters.{name}.image {exporter.image!r} is not allowed: use any tag of "
        f"{list(default_image_repositories())}, or an image the chart's "
        f"exporterImageAllowlist allows (now {list(allowed)})"
        for name, exporter in spec.exporters.enabled().items()
        if not image_allowed(exporter.image, allowed)
    ]


def validate(
    raw: Mapping[str, Any], known_alerts: frozenset[str], allowed_images: Sequence[str] = ()
) -> tuple[list[str], JewelryMonitoringSpec | None]:
    """The parsed spec (None if it does not parse) and everything wrong with it, each
    message beginning with the field it is about."""
    try:
        spec = JewelryMonitoringSpec.model_validate(raw)
    except ValidationError as error:
        return [f"{field_path(e['loc'])}: {e['msg']}" for e in error.errors()], None
    return semantic_problems(spec, known_alerts, allowed_images), spec


def field_path(location: Sequence[int | str]) -> str:
    """``("exporters", "redis", "port")`` as ``exporters.redis.port``, list items as ``[0]``."""
    return "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in location
    ).lstrip(".")


def semantic_problems(
    spec: JewelryMonitoringSpec, known_alerts: frozenset[str], allowed_images: Sequence[str] = ()
) -> list[str]:
    """Everything wrong with a schema-valid spec, as messages a user can act on."""
    problems: list[str] = []
    app = spec.app
    if duration_seconds(app.scrape_timeout) > duration_seconds(app.interval):
        problems.append(
            f"app.scrapeTimeout {app.scrape_timeout} is longer than app.interval {app.interval}"
        )
    if app.basic_auth and app.bearer_token_secret:
        problems.append("app.basicAuth and app.bearerTokenSecret are exclusive: choose one")
    if app.tls and app.scheme != "https":
        problems.append("app.tls is set but app.scheme is http: set scheme to https")
    for name, exporter in spec.exporters.enabled().items():
        if duration_seconds(exporter.scrape_timeout) > duration_seconds(exporter.interval):
            problems.append(
                f"exporters.{name}.scrapeTimeout {exporter.scrape_timeout} is longer than "
                f"exporters.{name}.interval {exporter.interval}"
            )
        field = REQUIRED_EXPORTER_SECRETS.get(name)
        if field and getattr(exporter, field) is None:
            problems.append(
                f"exporters.{name} is enabled but exporters.{name}.{to_camel(field)}"
                " (a secretKeyRef) is not set"
            )
    problems += image_problems(spec, allowed_images)
    unknown = sorted(set(spec.alerts.overrides) - known_alerts)
    if unknown:
        problems.append(
            f"alerts.overrides names unknown alerts {unknown}; known: {sorted(known_alerts)}"
        )
    if spec.routing is not None:
        problems += routing_problems(spec.routing, known_alerts | users_alerts(spec))
    if spec.prometheus and spec.prometheus.url and spec.prometheus.prometheus_ref:
        problems.append("prometheus.url and prometheus.prometheusRef are exclusive: choose one")
    if (
        spec.prometheus
        and duration_seconds(spec.prometheus.check_interval) < MIN_TARGETS_CHECK_SECONDS
    ):
        problems.append(
            f"prometheus.checkInterval {spec.prometheus.check_interval} is shorter than "
            f"{MIN_TARGETS_CHECK_SECONDS}s: checking that often only loads Prometheus"
        )
    latency = spec.slos.latency
    if latency and latency.threshold_seconds not in LATENCY_BUCKETS:
        problems.append(
            f"slos.latency.thresholdSeconds {latency.threshold_seconds} is not a latency bucket"
            f" boundary; choose one of {list(LATENCY_BUCKETS)}"
        )
    return problems + kubernetes_problems(spec) + rule_group_problems(spec.extra_rule_groups)


def users_alerts(spec: JewelryMonitoringSpec) -> frozenset[str]:
    """The alert names of ``extraRuleGroups``: routes may match them by name, as ours."""
    return frozenset(
        rule.alert
        for group in spec.extra_rule_groups
        for rule in group.rules
        if rule.alert is not None
    )


def _rule_problems(where: str, rule: RuleSpec) -> list[str]:
    problems = []
    if (rule.alert is None) == (rule.record is None):
        problems.append(f"{where}: set exactly one of alert and record")
    if not rule.expr.strip():
        problems.append(f"{where}.expr is blank")
    if rule.record is not None and not METRIC_NAME.fullmatch(rule.record):
        problems.append(f"{where}.record {rule.record!r} is not a metric name")
    if rule.alert is not None and not rule.alert.strip():
        problems.append(f"{where}.alert is blank")
    if rule.record is not None:
        problems += [
            f"{where}.{field} applies to alerting rules only"
            for field, value in (
                ("for", rule.for_),
                ("keep_firing_for", rule.keep_firing_for),
                ("annotations", rule.annotations),
            )
            if value
        ]
    problems += [
        f"{where}.{field} is empty: leave it out or give a duration such as 5m"
        for field, value in (("for", rule.for_), ("keep_firing_for", rule.keep_firing_for))
        if value == ""
    ]
    return problems


def rule_group_problems(groups: Sequence[RuleGroupSpec]) -> list[str]:
    """The user's rule groups checked as Prometheus loads a rule file (structure, names,
    durations; PromQL itself is Prometheus' to parse), and kept apart from ours."""
    problems = []
    seen: set[str] = set()
    for index, group in enumerate(groups):
        where = f"extraRuleGroups[{index}]"
        if group.name in seen:
            problems.append(f"{where}.name {group.name!r} is used twice: group names are unique")
        seen.add(group.name)
        if group.name.startswith(OUR_GROUP_PREFIX):
            problems.append(
                f"{where}.name {group.name!r}: names beginning {OUR_GROUP_PREFIX!r} are the "
                "operator's own groups; choose another"
            )
        if group.interval == "":
            problems.append(f"{where}.interval is empty: leave it out or give a duration")
        for number, rule in enumerate(group.rules):
            problems += _rule_problems(f"{where}.rules[{number}]", rule)
    return problems


# Container resources an exporter may ask for: others need a device plugin it cannot use.
RESOURCE_NAMES = ("cpu", "memory", "ephemeral-storage")


def quantity_problems(where: str, amounts: Mapping[str, str]) -> list[str]:
    """Resource names a container may not ask for, and amounts that are no quantity."""
    problems = []
    for resource, amount in amounts.items():
        value = quantity_value(amount)
        if resource not in RESOURCE_NAMES:
            problems.append(f"{where}: {resource!r} is not one of {RESOURCE_NAMES}")
        elif value is None:
            problems.append(f"{where}.{resource}: {amount!r} is not a quantity")
        elif value < 0:
            problems.append(f"{where}.{resource}: {amount!r} is negative")
    return problems


def _requests_over_limits(where: str, resources: Resources) -> list[str]:
    problems = []
    for resource, amount in resources.requests.items():
        request, limit = quantity_value(amount), quantity_value(resources.limits.get(resource, ""))
        if request is not None and limit is not None and request > limit:
            problems.append(
                f"{where}.requests.{resource} {amount} is more than its limit "
                f"{resources.limits[resource]}"
            )
    return problems


def exporter_target(exporter: ExporterSpec) -> tuple[str, int] | str | None:
    """(host, port) an exporter connects to as its settings say; why not if they are wrong;
    None if they are in a Secret (the operator never reads one)."""
    if isinstance(exporter, RedisExporterSpec):
        return url_host_port(exporter.address, REDIS_SCHEMES)
    if isinstance(exporter, NginxExporterSpec):
        return url_host_port(exporter.scrape_uri, NGINX_SCHEMES)
    return None


def _exporter_problems(name: str, exporter: ExporterSpec) -> list[str]:
    where = f"exporters.{name}"
    problems = _requests_over_limits(f"{where}.resources", exporter.resources or Resources())
    target = exporter_target(exporter)
    if isinstance(target, str):
        field = "address" if name == "redis" else "scrapeUri"
        problems.append(f"{where}.{field}: {target}")
    chosen = exporter.network_target
    if chosen:
        problems += [
            problem
            for cidr in chosen.cidrs
            if (problem := cidr_problem(f"{where}.networkTarget.cidrs", cidr))
        ]
    return problems


def kubernetes_problems(spec: JewelryMonitoringSpec) -> list[str]:
    """Values the CRD's schema lets through that the API server would refuse in a child
    (names, label maps, ports, address ranges, resources) or Prometheus in a rule."""
    problems = string_map_problems(spec)
    port = port_problem("app.port", spec.app.port)
    problems += [port] if port else []
    dashboards = spec.dashboards
    folder_key = qualified_name_problem(dashboards.folder_annotation)
    problems += [f"dashboards.folderAnnotation: {folder_key}"] if folder_key else []
    problems += [
        problem
        for problem in (
            annotations_size_problem("commonAnnotations", spec.common_annotations, {}),
            annotations_size_problem(
                "dashboards.annotations",
                dashboards.annotations,
                {**spec.common_annotations, dashboards.folder_annotation: dashboards.folder},
            ),
        )
        if problem
    ]
    for name, exporter in spec.exporters.enabled().items():
        problems += _exporter_problems(name, exporter)
    return problems


def _object_label_problems(where: str, labels: Mapping[str, str]) -> list[str]:
    """Labels of the operator's own objects: the server's syntax, and none it selects by."""
    problems = label_map_problems(where, labels)
    reserved = sorted(OPERATOR_LABELS & set(labels))
    if reserved:
        problems.append(
            f"{where} sets {', '.join(reserved)}: the operator sets these labels itself to "
            "find and select its objects; remove them"
        )
    return problems


def _alert_label_problems(where: str, labels: Mapping[str, str]) -> list[str]:
    """Labels of the rules the operator writes: Prometheus' syntax, and none that tells one
    resource's alerts from another's."""
    problems = prometheus_label_problems(where, labels)
    reserved = sorted(RESERVED_ALERT_LABELS & set(labels))
    if reserved:
        problems.append(
            f"{where} sets {', '.join(reserved)}: routing and inhibition tell this resource's "
            f"alerts from others' by them (the operator sets {ALERT_OWNER_LABEL} and "
            "namespace itself, job names the scraped targets); remove them"
        )
    return problems


# How each kind of string map is checked.
_MAP_CHECKS: dict[MapKind, Callable[[str, Mapping[str, str]], list[str]]] = {
    MapKind.OBJECT_LABELS: _object_label_problems,
    MapKind.SELECTOR: label_map_problems,
    MapKind.ANNOTATIONS: annotation_problems,
    MapKind.ALERT_LABELS: _alert_label_problems,
    MapKind.RULE_ANNOTATIONS: prometheus_label_problems,
    MapKind.QUANTITIES: quantity_problems,
}
assert set(_MAP_CHECKS) == set(MapKind)


def string_map_problems(spec: JewelryMonitoringSpec) -> list[str]:
    """Every string map of the spec, wherever it is, checked as its kind says."""
    return [
        problem
        for where, kind, values in string_maps(spec)
        for problem in _MAP_CHECKS[kind](where, values)
    ]


def _group_by_problems(where: str, group_by: Sequence[str] | None) -> list[str]:
    if group_by is None:
        return []
    if not group_by:  # prometheus-operator drops an empty list: the route would inherit
        return [
            f"{where}.groupBy is empty, which Alertmanager reads as the parent route's "
            "grouping: leave it out for that, or name labels ('...' groups by every label)"
        ]
    if len(set(group_by)) != len(group_by):
        return [f"{where}.groupBy {list(group_by)} repeats a label"]
    if "..." in group_by and len(group_by) > 1:
        return [f"{where}.groupBy: '...' (every label) must be its only entry"]
    return []


def routing_problems(routing: RoutingSpec, known_alerts: frozenset[str]) -> list[str]:
    """What prometheus-operator would reject (and so silently route nothing), said up front."""
    names = [receiver.name for receiver in routing.receivers]
    problems = [
        f"routing.receivers: {name!r} is declared twice"
        for name in sorted({n for n in names if names.count(n) > 1})
    ]
    if routing.receiver not in names:
        problems.append(f"routing.receiver {routing.receiver!r} is not one of {names}")
    problems += _group_by_problems("routing", routing.group_by)
    for index, route in enumerate(routing.routes):
        where = f"routing.routes[{index}]"
        if route.receiver not in names:
            problems.append(f"{where}.receiver {route.receiver!r} is not one of {names}")
        unknown = sorted(set(route.alert_names) - known_alerts)
        if unknown:
            problems.append(
                f"{where}.alertNames names unknown alerts {unknown}: neither ours nor an alert "
                "of extraRuleGroups"
            )
        problems += _group_by_problems(where, route.group_by)
    return problems


def secret_refs(spec: JewelryMonitoringSpec) -> dict[str, SecretKeyRef]:
    """Every Secret key the spec points at, by the spec path that names it."""
    refs: dict[str, SecretKeyRef] = {}
    app = spec.app
    if app.basic_auth:
        refs["app.basicAuth.username"] = app.basic_auth.username
        refs["app.basicAuth.password"] = app.basic_auth.password
    if app.bearer_token_secret:
        refs["app.bearerTokenSecret"] = app.bearer_token_secret
    if app.tls and app.tls.ca:
        refs["app.tls.ca"] = app.tls.ca
    for name, exporter in spec.exporters.enabled().items():
        for field_name in ("data_source", "password", "broker_url"):
            ref = getattr(exporter, field_name, None)
            if ref is not None:
                refs[f"exporters.{name}.{to_camel(field_name)}"] = ref
    for receiver in spec.routing.receivers if spec.routing else []:
        for integration in RECEIVER_INTEGRATIONS:
            settings = getattr(receiver, integration)
            for field_name, value in settings or ():
                if isinstance(value, SecretKeyRef):
                    refs[
                        f"routing.receivers.{receiver.name}.{integration}.{to_camel(field_name)}"
                    ] = value
    return refs
