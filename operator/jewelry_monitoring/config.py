"""Operator configuration: read from flags and environment once, validated at startup."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass


class ConfigError(ValueError):
    """A setting is unusable; the message names the setting."""


@dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...]  # empty: all namespaces
    peering: str  # empty: standalone, no peering
    priority: int
    liveness_endpoint: str
    resync_seconds: float
    log_level: str
    # Image repositories (or prefixes ending in /) a CR may name besides the pinned defaults.
    allowed_images: tuple[str, ...] = ()

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def default_priority(pod_name: str) -> int:
    """A priority unique per replica: kopf freezes peers of equal priority, so two replicas
    of one Deployment (same arguments) must still differ. Derived from the pod name."""
    return int(hashlib.sha256(pod_name.encode()).hexdigest()[:6], 16) % 10_000 + 1


def load(
    namespaces: list[str] | None = None,
    peering: str | None = None,
    priority: int | None = None,
    env: dict[str, str] | None = None,
) -> OperatorConfig:
    """Flags win over environment variables (JM_*), which win over defaults."""
    environ = dict(os.environ if env is None else env)
    spaces = namespaces or [n for n in environ.get("JM_NAMESPACES", "").split(",") if n.strip()]
    resync = float(_int("JM_RESYNC_SECONDS", environ.get("JM_RESYNC_SECONDS", "300")))
    if resync < 10:
        raise ConfigError("JM_RESYNC_SECONDS must be at least 10")
    port = _int("JM_LIVENESS_PORT", environ.get("JM_LIVENESS_PORT", "8080"))
    level = environ.get("JM_LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"JM_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {level}")
    if priority is None and environ.get("JM_PRIORITY"):
        priority = _int("JM_PRIORITY", environ["JM_PRIORITY"])
    return OperatorConfig(
        namespaces=tuple(sorted({n.strip() for n in spaces})),
        peering=peering if peering is not None else environ.get("JM_PEERING", ""),
        priority=priority
        if priority is not None
        else default_priority(environ.get("POD_NAME", os.uname().nodename)),
        liveness_endpoint=f"http://0.0.0.0:{port}/healthz" if port else "",
        resync_seconds=resync,
        log_level=level,
        allowed_images=tuple(
            entry.strip()
            for entry in environ.get("JM_ALLOWED_IMAGES", "").split(",")
            if entry.strip()
        ),
    )
