"""Environment-variable parsing used by settings (no Django imports here)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

TRUE_VALUES = {"1", "true", "yes", "on", "t", "y"}
FALSE_VALUES = {"0", "false", "no", "off", "f", "n", ""}


def env_bool(name: str, default: bool, environ: Mapping[str, str] = os.environ) -> bool:
    """Parse a boolean environment variable; unknown values raise ValueError."""
    raw = environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in FALSE_VALUES:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean")


def env_list(name: str, default: list[str], environ: Mapping[str, str] = os.environ) -> list[str]:
    """Parse a comma-separated list; blank entries are dropped."""
    raw = environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def parse_database_url(url: str, *, instrumented: bool = True) -> dict[str, Any]:
    """Turn ``postgres://user:pass@host:port/db?sslmode=require`` or ``sqlite:///path``
    into a Django ``DATABASES`` entry, using django-prometheus's engine wrappers when
    ``instrumented``.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("sqlite", "sqlite3"):
        engine = (
            "django_prometheus.db.backends.sqlite3"
            if instrumented
            else "django.db.backends.sqlite3"
        )
        # sqlite:///relative.db -> "relative.db"; sqlite:////abs/path.db -> "/abs/path.db";
        # sqlite:///:memory: -> ":memory:"
        path = unquote(parts.path)
        name = path[1:] if path.startswith("/") else path
        return {"ENGINE": engine, "NAME": name or ":memory:"}
    if scheme in ("postgres", "postgresql", "pgsql"):
        engine = (
            "django_prometheus.db.backends.postgresql"
            if instrumented
            else "django.db.backends.postgresql"
        )
        options = dict(parse_qsl(parts.query))
        conn_max_age = int(options.pop("conn_max_age", "60"))
        return {
            "ENGINE": engine,
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "CONN_MAX_AGE": conn_max_age,
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    raise ValueError(f"unsupported DATABASE_URL scheme {scheme!r}")
