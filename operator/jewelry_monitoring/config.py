"""Operator configuration: read from flags and environment once, validated at startup."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass


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
    )


def _list(environ: dict[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list, blanks dropped."""
    return tuple(entry.strip() for entry in environ.get(name, "").split(",") if entry.strip())
