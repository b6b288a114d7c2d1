"""Operator configuration: read from flags and environment once, validated at startup."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jewelry_monitoring.validation import DNS_LABEL, DNS_SUBDOMAIN, label_map_problems


class ConfigError(ValueError):
    """A setting is unusable; the message names the setting."""


@dataclass(frozen=True)
class LeaseSettings:
    """Leader election: which Lease, who we are, and client-go's three durations."""

    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


@dataclass(frozen=True)
class ExporterPods:
    """What every exporter pod gets from whoever installed the operator rather than from a
    resource (the chart's imagePullSecrets and priorityClassName): a resource's author may
    not choose which credentials pull images or which pods the scheduler evicts first."""

    image_pull_secrets: tuple[str, ...] = ()
    priority_class_name: str = ""


# Neither pull secrets nor a priority class: what ``render`` and a bare operator use.
PLAIN_EXPORTER_PODS = ExporterPods()


@dataclass(frozen=True)
class ResourceDefaults:
    """What the chart sets for every JewelryMonitoring that does not set its own: the labels
    that make kube-prometheus-stack select our objects (release: <its release>), and the
    Prometheus the operator checks them against. Also the only Prometheus URLs the operator
    may fetch: a resource's spec.prometheus.url must be one of them (a URL in a CR would
    otherwise make the operator fetch anything, a cloud metadata address included)."""

    monitor_labels: dict[str, str] = field(default_factory=dict)
    alertmanager_config_labels: dict[str, str] = field(default_factory=dict)
    # "namespace/name" of a prometheus-operator Prometheus resource, or "".
    prometheus_ref: str = ""
    prometheus_url: str = ""
    allowed_prometheus_urls: tuple[str, ...] = ()

    def url_allowed(self, url: str) -> bool:
        wanted = normalized_url(url)
        return any(
            normalized_url(allowed) == wanted
            for allowed in (self.prometheus_url, *self.allowed_prometheus_urls)
            if allowed
        )

    def apply(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """A resource's spec (as written, before validation: the defaults are validated
        with it) with the defaults in every place it leaves empty."""
        effective = dict(spec)
        if not effective.get("monitorLabels") and self.monitor_labels:
            effective["monitorLabels"] = dict(self.monitor_labels)
        routing = effective.get("routing")
        if (
            isinstance(routing, Mapping)
            and not routing.get("alertmanagerConfigLabels")
            and self.alertmanager_config_labels
        ):
            labels = dict(self.alertmanager_config_labels)
            effective["routing"] = {**routing, "alertmanagerConfigLabels": labels}
        if effective.get("prometheus") is None and (self.prometheus_ref or self.prometheus_url):
            effective["prometheus"] = {}
        return effective


def normalized_url(url: str) -> str:
    """A Prometheus base URL compared as the same address: scheme and host lower-case, no
    trailing slash."""
    scheme, _, rest = url.strip().partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}".rstrip("/")


_URL = re.compile(r"https?://[^/?#\s]+[^?#\s]*")
_REF = re.compile(rf"{DNS_LABEL}/{DNS_SUBDOMAIN}")


def _labels(name: str, environ: dict[str, str]) -> dict[str, str]:
    raw = environ.get(name, "").strip() or "{}"
    try:
        labels = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a JSON object of labels, got {raw!r}") from None
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ConfigError(f"{name} must be a JSON object of string labels, got {raw!r}")
    problems = label_map_problems(name, labels)
    if problems:
        raise ConfigError("; ".join(problems))
    return labels


def resource_defaults(environ: dict[str, str]) -> ResourceDefaults:
    """The chart's defaults for every resource, from JM_DEFAULT_* and JM_PROMETHEUS_*."""
    ref = environ.get("JM_PROMETHEUS_REF", "").strip()
    if ref and not _REF.fullmatch(ref):
        raise ConfigError(f"JM_PROMETHEUS_REF must be <namespace>/<name>, got {ref!r}")
    url = environ.get("JM_PROMETHEUS_URL", "").strip()
    allowed = tuple(
        entry.strip()
        for entry in environ.get("JM_PROMETHEUS_ALLOWED_URLS", "").split(",")
        if entry.strip()
    )
    for name, value in [("JM_PROMETHEUS_URL", url)] + [
        ("JM_PROMETHEUS_ALLOWED_URLS", entry) for entry in allowed
    ]:
        if value and not _URL.fullmatch(value):
            raise ConfigError(f"{name}: {value!r} is not an http(s) URL without query")
    if ref and url:
        raise ConfigError("JM_PROMETHEUS_REF and JM_PROMETHEUS_URL are exclusive: choose one")
    return ResourceDefaults(
        monitor_labels=_labels("JM_DEFAULT_MONITOR_LABELS", environ),
        alertmanager_config_labels=_labels("JM_DEFAULT_ALERTMANAGER_CONFIG_LABELS", environ),
        prometheus_ref=ref,
        prometheus_url=url,
        allowed_prometheus_urls=allowed,
    )


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...]  # empty: all namespaces
    lease: LeaseSettings | None  # None: no leader election (a single replica)
    liveness_endpoint: str
    metrics_port: int  # 0: no metrics endpoint
    resync_seconds: float
    log_level: str
    # Image repositories (or prefixes ending in /) a CR may name besides the pinned defaults.
    allowed_images: tuple[str, ...] = ()
    # Where alerts link their runbooks, for resources that do not say (the chart's value);
    # empty: this project's (spec.DEFAULT_RUNBOOK_URL_BASE).
    runbook_url_base: str = ""
    exporter_pods: ExporterPods = PLAIN_EXPORTER_PODS
    defaults: ResourceDefaults = field(default_factory=ResourceDefaults)

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _port(name: str, environ: dict[str, str], default: str) -> int:
    port = _int(name, environ.get(name, default))
    if not 0 <= port <= 65535:
        raise ConfigError(f"{name} must be a port number (0 turns it off), got {port}")
    return port


def _lease(environ: dict[str, str], enabled: bool | None) -> LeaseSettings | None:
    """Leader election settings (JM_LEADER_ELECTION and the JM_LEASE_* variables)."""
    if enabled is None:
        enabled = environ.get("JM_LEADER_ELECTION", "false").lower() in ("1", "true", "yes")
    if not enabled:
        return None
    namespace = environ.get("JM_LEASE_NAMESPACE") or environ.get("POD_NAMESPACE", "")
    if not namespace:
        raise ConfigError("leader election needs JM_LEASE_NAMESPACE (or POD_NAMESPACE)")
    seconds = {
        name: _int(name, environ.get(name, default))
        for name, default in (
            ("JM_LEASE_DURATION_SECONDS", "15"),
            ("JM_RENEW_DEADLINE_SECONDS", "10"),
            ("JM_RETRY_PERIOD_SECONDS", "2"),
        )
    }
    duration, deadline, period = seconds.values()
    if not 0 < period < deadline < duration:
        raise ConfigError(
            "leader election needs 0 < JM_RETRY_PERIOD_SECONDS < JM_RENEW_DEADLINE_SECONDS"
            f" < JM_LEASE_DURATION_SECONDS, got {period} < {deadline} < {duration}"
        )
    # client-go's default identity: unique even for two processes on one host.
    identity = environ.get("POD_NAME") or f"{os.uname().nodename}_{uuid.uuid4().hex[:8]}"
    return LeaseSettings(
        namespace=namespace,
        name=environ.get("JM_LEASE_NAME", "jewelry-monitoring-leader"),
        identity=identity,
        lease_duration=duration,
        renew_deadline=deadline,
        retry_period=period,
    )


def load(
    namespaces: list[str] | None = None,
    leader_election: bool | None = None,
    env: dict[str, str] | None = None,
) -> OperatorConfig:
    """Flags win over environment variables (JM_*), which win over defaults."""
    environ = dict(os.environ if env is None else env)
    spaces = namespaces or [n for n in environ.get("JM_NAMESPACES", "").split(",") if n.strip()]
    # Off by default: the watches (re-listed after a 410) report every change a reconcile
    # could act on, and an idle operator should make no requests at all.
    resync = float(_int("JM_RESYNC_SECONDS", environ.get("JM_RESYNC_SECONDS", "0")))
    if 0 < resync < 10:
        raise ConfigError("JM_RESYNC_SECONDS must be 0 (off) or at least 10")
    liveness = _port("JM_LIVENESS_PORT", environ, "8080")
    metrics_port = _port("JM_METRICS_PORT", environ, "8081")
    if metrics_port and metrics_port == liveness:
        raise ConfigError(f"JM_METRICS_PORT and JM_LIVENESS_PORT are both {liveness}")
    level = environ.get("JM_LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"JM_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level}")
    return OperatorConfig(
        namespaces=tuple(sorted({n.strip() for n in spaces})),
        lease=_lease(environ, leader_election),
        liveness_endpoint=f"http://0.0.0.0:{liveness}/healthz" if liveness else "",
        metrics_port=metrics_port,
        resync_seconds=resync,
        log_level=level,
        allowed_images=_list(environ, "JM_ALLOWED_IMAGES"),
        exporter_pods=ExporterPods(
            image_pull_secrets=_list(environ, "JM_EXPORTER_IMAGE_PULL_SECRETS"),
            priority_class_name=environ.get("JM_EXPORTER_PRIORITY_CLASS_NAME", "").strip(),
        ),
        runbook_url_base=environ.get("JM_RUNBOOK_URL_BASE", "").strip(),
        defaults=resource_defaults(environ),
    )


def _list(environ: dict[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(entry.strip() for entry in environ.get(name, "").split(",") if entry.strip())
