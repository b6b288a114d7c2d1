"""``manage.py check``: the setup mistakes that make ``/metrics`` wrong, empty or unprotected,
each reported with its fix (tag ``prometheus``: ``manage.py check --tag prometheus``).

| id | what |
|---|---|
| E001 | ``django_prometheus`` not in INSTALLED_APPS |
| E002 | ``PrometheusBeforeMiddleware`` missing or not first in MIDDLEWARE |
| E003 | ``PrometheusAfterMiddleware`` missing or not last in MIDDLEWARE |
| W004 | a database whose ENGINE is not wrapped by django-prometheus |
| W005 | a cache whose BACKEND is not wrapped by django-prometheus |
| W011 | a cache whose BACKEND counts reads (django-prometheus's) but not writes |
| W006 | gunicorn with several workers but no ``PROMETHEUS_MULTIPROC_DIR`` |
| W012 | multiprocess mode without the package's gunicorn ``child_exit`` (files never folded) |
| W013 | gunicorn's configuration cannot be read |
| W014 | ``PROMETHEUS_EXPORT_MIGRATIONS`` off: DjangoUnappliedMigrations can never fire |
| W015 | the Celery app's task events off: CeleryTaskFailures can never fire |
| W016 | more views than ``PROMETHEUS_MAX_VIEWS``, routed or seen in the metrics |
| W017 | django-prometheus's own AppConfig with ``PROMETHEUS_EXPORT_MIGRATIONS``: a query at start |
| E007 | ``PROMETHEUS_METRICS_ALLOWED_IPS`` / ``..._TRUSTED_PROXIES`` not a list of CIDRs |
| E008 | basic auth with a user name but no password, or the reverse |
| W009 | no URL routes to the protected view |
| E010 | django-prometheus's unprotected view is routed |

Ids are prefixed ``jewelry_monitoring_django.``. Middleware, backends and views are compared
by class (subclasses count), so wrappers of the django-prometheus classes pass (caches: of
``jewelry_monitoring_django.cache``'s, which count writes too).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.checks import CheckMessage, Error, Warning
from django.db import connections
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils.module_loading import import_string
from django_prometheus.apps import DjangoPrometheusConfig as UpstreamConfig

from jewelry_monitoring_django import access, gunicorn_config

ID = "jewelry_monitoring_django"
TAG = "prometheus"

BEFORE = "django_prometheus.middleware.PrometheusBeforeMiddleware"
AFTER = "jewelry_monitoring_django.middleware.PrometheusAfterMiddleware"
UPSTREAM_AFTER = "django_prometheus.middleware.PrometheusAfterMiddleware"
CACHE = "jewelry_monitoring_django.cache"
APP_CONFIG = "jewelry_monitoring_django.apps.DjangoPrometheusConfig"

# Django's (and django-redis's) cache backends -> ours: django-prometheus's wrapper of each,
# counting sets and deletes too (jewelry_monitoring_django.cache).
CACHE_WRAPPERS = {
    "django.core.cache.backends.locmem.LocMemCache": f"{CACHE}.LocMemCache",
    "django.core.cache.backends.filebased.FileBasedCache": f"{CACHE}.FileBasedCache",
    "django.core.cache.backends.memcached.PyMemcacheCache": f"{CACHE}.PyMemcacheCache",
    "django.core.cache.backends.memcached.PyLibMCCache": f"{CACHE}.PyLibMCCache",
    "django.core.cache.backends.redis.RedisCache": f"{CACHE}.NativeRedisCache",
    "django_redis.cache.RedisCache": f"{CACHE}.RedisCache",
}
# Where django-prometheus's cache backends (which count reads) live.
UPSTREAM_CACHES = "django_prometheus.cache.backends."
HOOKS_IMPORT = "from jewelry_monitoring_django.gunicorn import child_exit, on_starting"
UNMEASURED_CACHES = ("django.core.cache.backends.dummy.DummyCache",)


def _class(path: str) -> type | None:
    """The class at dotted ``path``, or None if there is none."""
    try:
        found = import_string(path)
    except ImportError:
        return None
    return found if isinstance(found, type) else None


def _is(path: str, base: str) -> bool:
    """True if the class at dotted ``path`` is (a subclass of) the class at ``base``."""
    cls, base_cls = _class(path), _class(base)
    return cls is not None and base_cls is not None and issubclass(cls, base_cls)


def installed(**_: Any) -> list[CheckMessage]:
    """E001: django-prometheus missing; W017: its own AppConfig, which queries at start."""
    if not apps.is_installed("django_prometheus"):
        return [
            Error(
                "django_prometheus is not in INSTALLED_APPS.",
                hint=f'Add "{APP_CONFIG}" to INSTALLED_APPS (django-prometheus without the '
                "database query its own AppConfig makes at start).",
                id=f"{ID}.E001",
            )
        ]
    config = apps.get_app_config("django_prometheus")
    if getattr(settings, "PROMETHEUS_EXPORT_MIGRATIONS", False) and (
        type(config).ready is UpstreamConfig.ready
    ):
        return [
            Warning(
                "django-prometheus's AppConfig counts the migrations in ready(): a database "
                "query in every process at start (Django warns of database access during app "
                "initialization; a worker whose database is not up yet crashes), and the "
                "gauges keep that value until a restart.",
                hint=f'In INSTALLED_APPS, replace "django_prometheus" with "{APP_CONFIG}": '
                "the same app without that query; /metrics counts the migrations at scrape "
                "time.",
                id=f"{ID}.W017",
            )
        ]
    return []


def middleware_order(**_: Any) -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    befores = [i for i, m in enumerate(middleware) if _is(m, BEFORE)]
    afters = [i for i, m in enumerate(middleware) if _is(m, UPSTREAM_AFTER)]
    errors: list[CheckMessage] = []
    if befores != [0]:
        where = f"at position {befores[0] + 1} of {len(middleware)}" if befores else "missing"
        errors.append(
            Error(
                f"PrometheusBeforeMiddleware is {where} in MIDDLEWARE: requests handled "
                "before it are not counted and latencies are short.",
                hint=f'Make "{BEFORE}" the first entry of MIDDLEWARE.',
                id=f"{ID}.E002",
            )
        )
    if afters != [len(middleware) - 1]:
        where = f"at position {afters[0] + 1} of {len(middleware)}" if afters else "missing"
        errors.append(
            Error(
                f"PrometheusAfterMiddleware is {where} in MIDDLEWARE: responses and "
                "exceptions of the middleware after it are not counted.",
                hint=f'Make "{AFTER}" (django-prometheus\'s, with a bounded `method` label) '
                "the last entry of MIDDLEWARE.",
                id=f"{ID}.E003",
            )
        )
    return errors


def databases_wrapped(**_: Any) -> list[CheckMessage]:
    from django_prometheus.db.common import DatabaseWrapperMixin

    warnings: list[CheckMessage] = []
    for alias in connections:
        engine = connections.databases[alias].get("ENGINE", "")
        if isinstance(connections[alias], DatabaseWrapperMixin):
            continue
        vendor = engine.rsplit(".", 1)[-1]
        wrapper = f"django_prometheus.db.backends.{vendor}"
        found = importlib.util.find_spec(wrapper) is not None
        warnings.append(
            Warning(
                f'DATABASES["{alias}"] ENGINE {engine!r} is not wrapped by django-prometheus: '
                "no django_db_* metrics for it.",
                hint=f'Set its ENGINE to "{wrapper}".'
                if found
                else "Use an ENGINE from django_prometheus.db.backends (or a subclass of "
                "django_prometheus.db.common.DatabaseWrapperMixin).",
                id=f"{ID}.W004",
            )
        )
    return warnings


def caches_wrapped(**_: Any) -> list[CheckMessage]:
    """W005: a cache nothing counts; W011: one whose reads are counted but not its writes
    (django-prometheus's own backends), so the cache dashboard's set and delete rates stay
    empty."""
    from jewelry_monitoring_django.cache import SetDeleteCounting

    warnings: list[CheckMessage] = []
    for alias, options in (getattr(settings, "CACHES", None) or {}).items():
        backend = options.get("BACKEND", "")
        cls = _class(backend)
        if backend in UNMEASURED_CACHES or (cls and issubclass(cls, SetDeleteCounting)):
            continue
        upstream = (
            [b for b in cls.__mro__ if b.__module__.startswith(UPSTREAM_CACHES)] if cls else []
        )
        reads = bool(upstream)
        if reads:  # ours has the name of the django-prometheus backend it wraps
            ours = f"{CACHE}.{cls.__name__}" if upstream[0] is cls else None
        else:
            ours = CACHE_WRAPPERS.get(backend)
        hint = (
            f'Set its BACKEND to "{ours}".'
            if ours
            else f"Use a BACKEND from {CACHE}, or put {CACHE}.SetDeleteCounting first among "
            "the bases of your django-prometheus backend."
        )
        if reads:
            message = (
                f'CACHES["{alias}"] BACKEND {backend!r} counts reads but not writes: '
                "django_cache_set_total and django_cache_delete_total stay empty for it."
            )
        else:
            message = (
                f'CACHES["{alias}"] BACKEND {backend!r} is not wrapped by django-prometheus: '
                "no django_cache_* metrics for it."
            )
        warnings.append(Warning(message, hint=hint, id=f"{ID}.{'W011' if reads else 'W005'}"))
    return warnings


def multiprocess_dir(**_: Any) -> list[CheckMessage]:
    """W006: several gunicorn workers without multiprocess mode; W012: multiprocess mode
    without the package's child_exit hook. gunicorn's settings as gunicorn reads them
    (:mod:`.gunicorn_config`)."""
    if importlib.util.find_spec("gunicorn") is None:
        return []
    try:
        config = gunicorn_config.read()
    except (gunicorn_config.ConfigError, OSError, subprocess.SubprocessError) as exc:
        return [
            Warning(
                f"gunicorn's configuration cannot be read, so its worker count is unknown: {exc}",
                hint="Run gunicorn --check-config with the same arguments to see why.",
                id=f"{ID}.W013",
            )
        ]
    if config.workers <= 1:
        return []
    if not config.multiproc_dir:
        # A warning: this process may be a migrate Job that shares gunicorn's environment.
        return [
            Warning(
                f"gunicorn is set to {config.workers} workers but PROMETHEUS_MULTIPROC_DIR is "
                "not set: each scrape would see the counters of whichever worker answers, and "
                "they would jump up and down.",
                hint="Set the environment variable PROMETHEUS_MULTIPROC_DIR to an empty, "
                "writable directory before gunicorn starts (an emptyDir volume in Kubernetes), "
                f"and import the hooks in gunicorn's config file: {HOOKS_IMPORT}",
                id=f"{ID}.W006",
            )
        ]
    if not config.child_exit.startswith(f"{gunicorn_config.HOOKS_MODULE}."):
        return [
            Warning(
                f"gunicorn's child_exit hook is {config.child_exit}, not the package's: the "
                "files of exited workers are never folded, so every scrape reads more of them "
                "as workers are recycled (max_requests, timeouts), until scrapes time out.",
                hint=f"Import the hooks in gunicorn's config file: {HOOKS_IMPORT}",
                id=f"{ID}.W012",
            )
        ]
    return []


def alert_inputs(**_: Any) -> list[CheckMessage]:
    """W014/W015: settings without which an alert of jewelry-monitoring can never fire."""
    messages: list[CheckMessage] = []
    if not getattr(settings, "PROMETHEUS_EXPORT_MIGRATIONS", False):
        messages.append(
            Warning(
                "PROMETHEUS_EXPORT_MIGRATIONS is not True: django_migrations_unapplied_total "
                "is not exported, so the DjangoUnappliedMigrations alert can never fire.",
                hint="Set PROMETHEUS_EXPORT_MIGRATIONS = True (the /metrics view counts "
                "migrations at scrape time), or add this check's id to "
                "SILENCED_SYSTEM_CHECKS if you do not want that alert.",
                id=f"{ID}.W014",
            )
        )
    app = _celery_app()
    if app is not None:
        off = [
            name
            for name in ("worker_send_task_events", "task_send_sent_event")
            if not app.conf.get(name)
        ]
        if off:
            messages.append(
                Warning(
                    f"Celery app {app.main!r} has {' and '.join(off)} off: celery-exporter "
                    "builds its metrics from task events, so CeleryTaskFailures can never fire"
                    " and the task dashboards stay empty.",
                    hint="With app.config_from_object('django.conf:settings', "
                    "namespace='CELERY'): CELERY_WORKER_SEND_TASK_EVENTS = True and "
                    "CELERY_TASK_SEND_SENT_EVENT = True (or run workers with -E).",
                    id=f"{ID}.W015",
                )
            )
    return messages


def _celery_app() -> Any:
    """The project's Celery app, if the project has imported Celery and made one (Celery's
    fallback app, named "default", says nothing about the project). Celery is not imported
    here: a project without it is not asked about it."""
    celery = sys.modules.get("celery")
    if celery is None:
        return None
    app = celery.current_app._get_current_object()
    return None if app.main in (None, "default") else app


def view_labels(**_: Any) -> list[CheckMessage]:
    """W016: more views than ``PROMETHEUS_MAX_VIEWS``, in the URLconf or in the metrics
    (requests counted under ``<other view>``: read from the multiprocess directory when this
    process shares gunicorn's, as ``manage.py check`` run in the app's container does)."""
    from jewelry_monitoring_django.middleware import DEFAULT_MAX_VIEWS, MAX_VIEWS, OTHER_VIEW

    limit = int(getattr(settings, MAX_VIEWS, DEFAULT_MAX_VIEWS))
    routed = len({_view_name(namespaces, pattern) for _, namespaces, pattern in _patterns()})
    overflowed = _requests_of_view(OTHER_VIEW)
    if routed <= limit and not overflowed:
        return []
    found = (
        f"{overflowed:g} requests were counted under view={OTHER_VIEW!r}"
        if overflowed
        else f"the URLconf routes {routed} distinct views"
    )
    return [
        Warning(
            f"{found}, more than {MAX_VIEWS} ({limit}) distinct views per process: the views "
            f"past that are not told apart in the metrics.",
            hint=f"Raise {MAX_VIEWS} above the number of views you serve (each view costs "
            "about 25 series per method), or give dynamic views one URL name.",
            id=f"{ID}.W016",
        )
    ]


def _patterns(
    patterns: list[Any] | None = None, route: str = "", namespaces: tuple[str, ...] = ()
) -> Iterator[tuple[str, tuple[str, ...], URLPattern]]:
    """Every URL pattern of the URLconf: (its full route, its namespaces, the pattern)."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            inner = (*namespaces, pattern.namespace) if pattern.namespace else namespaces
            yield from _patterns(pattern.url_patterns, route + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            yield route + str(pattern.pattern), namespaces, pattern


def _view_name(namespaces: tuple[str, ...], pattern: URLPattern) -> str:
    """The ``view`` label of a route, as Django's ResolverMatch.view_name makes it."""
    callback = pattern.callback
    name = pattern.name or f"{callback.__module__}.{getattr(callback, '__qualname__', '')}"
    return ":".join((*namespaces, name))


def _requests_of_view(view: str) -> float:
    """Requests counted under ``view`` so far, by every process of the metrics this one sees."""
    from jewelry_monitoring_django.views import build_registry

    name = "django_http_requests_total_by_view_transport_method_total"
    return sum(
        sample.value
        for family in build_registry(migrations=False).collect()
        for sample in family.samples
        if sample.name == name and sample.labels.get("view") == view
    )


def access_settings(**_: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, default in (
        (access.ALLOWED_IPS, access.DEFAULT_ALLOWED_IPS),
        (access.TRUSTED_PROXIES, ()),
    ):
        try:
            access.parse_networks(access.network_list(settings, name, default))
        except (TypeError, ValueError) as exc:
            errors.append(
                Error(
                    f"{name}: {exc}",
                    hint=f'Write {name} as a list of CIDRs, e.g. ["10.0.0.0/8", "fd00::/8"].',
                    id=f"{ID}.E007",
                )
            )
    user = any(getattr(settings, n, None) for n in _both(access.BASIC_AUTH_USERNAME))
    password = any(getattr(settings, n, None) for n in _both(access.BASIC_AUTH_PASSWORD))
    if user != password:
        missing = access.BASIC_AUTH_PASSWORD if user else access.BASIC_AUTH_USERNAME
        errors.append(
            Error(
                f"Basic auth for /metrics is half configured: {missing} (or {missing}_FILE) "
                "is not set, so basic auth is off.",
                hint=f"Set {missing} or {missing}_FILE, or remove the other one.",
                id=f"{ID}.E008",
            )
        )
    return errors


def _both(name: str) -> tuple[str, str]:
    return name, f"{name}_FILE"


def metrics_url(**_: Any) -> list[CheckMessage]:
    from django_prometheus.exports import ExportToDjangoView

    from jewelry_monitoring_django.views import metrics_view

    routes = [(route, pattern.callback) for route, _, pattern in _patterns()]
    messages: list[CheckMessage] = [
        Error(
            f"URL {route!r} serves django-prometheus's ExportToDjangoView, which anyone "
            "who reaches the app can read.",
            hint='Replace include("django_prometheus.urls") with '
            'include("jewelry_monitoring_django.urls").',
            id=f"{ID}.E010",
        )
        for route, view in routes
        if view is ExportToDjangoView
    ]
    if not any(view is metrics_view for _, view in routes):
        messages.append(
            Warning(
                "No URL serves the protected metrics view: Prometheus gets 404.",
                hint='Add path("", include("jewelry_monitoring_django.urls")) to your '
                "ROOT_URLCONF's urlpatterns.",
                id=f"{ID}.W009",
            )
        )
    return messages


ALL = (
    installed,
    middleware_order,
    databases_wrapped,
    caches_wrapped,
    multiprocess_dir,
    alert_inputs,
    view_labels,
    access_settings,
    metrics_url,
)


def register_all() -> None:
    for check in ALL:
        checks.register(check, TAG)
