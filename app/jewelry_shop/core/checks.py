"""System checks: refuse to start with a malformed /metrics access configuration."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register


@register()
def metrics_access_settings(app_configs: Any, **kwargs: Any) -> list[Error]:
    from jewelry_shop.monitoring.security import parse_networks

    errors = []
    for name in ("PROMETHEUS_METRICS_ALLOWED_IPS", "METRICS_TRUSTED_PROXIES"):
        try:
            parse_networks(getattr(settings, name, []))
        except ValueError as exc:
            errors.append(Error(f"{name}: {exc}", id="jewelry_shop.E001"))
    if getattr(settings, "METRICS_TRUSTED_PROXIES", []) and not getattr(
        settings, "METRICS_CLIENT_IP_HEADER", ""
    ):
        errors.append(
            Error(
                "METRICS_TRUSTED_PROXIES is set but METRICS_CLIENT_IP_HEADER is not",
                id="jewelry_shop.E002",
            )
        )
    return errors
