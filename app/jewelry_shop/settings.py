"""Settings for the jewelry shop, configured by environment variables.

With no environment at all this is a working development setup: SQLite in ``app/``,
local-memory cache, Celery tasks run eagerly in-process, DEBUG off. See app/README.md for
the full reference.
"""

from __future__ import annotations

import os
from pathlib import Path

import prometheus_client

from jewelry_shop.env import env_bool, env_list, parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent  # app/

# ``*_created`` series double the series count and nobody alerts on them.
prometheus_client.disable_created_metrics()

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY") or (
    # Only good enough for a laptop; `manage.py check --deploy` flags the prefix.
    "django-insecure-jewelry-shop-development-key-set-SECRET_KEY-in-production"
)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
# Kubernetes probes and Prometheus use the pod IP as Host header; expose it through the
# downward API (env POD_IP from status.podIP) and it is accepted automatically.
if os.environ.get("POD_IP"):
    _pod_ip = os.environ["POD_IP"]
    ALLOWED_HOSTS.append(f"[{_pod_ip}]" if ":" in _pod_ip else _pod_ip)

# Bench/diagnostic switch: with PROMETHEUS_ENABLED=false the middleware, DB/cache
# wrappers, model mixins and /metrics are all removed (same views, same data).
PROMETHEUS_ENABLED = env_bool("PROMETHEUS_ENABLED", True)
ENABLE_ERROR_ENDPOINT = env_bool("ENABLE_ERROR_ENDPOINT", False)
# Test-only: this many series of one extra family (jewelry_shop_test_series), for the
# cardinality guard's tests (a target nearing its sampleLimit). 0: none.
TEST_METRIC_SERIES = int(os.environ.get("TEST_METRIC_SERIES") or 0)

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.staticfiles",
    "jewelry_shop.core",
    "jewelry_shop.catalog",
    "jewelry_shop.inventory",
    "jewelry_shop.customers",
    "jewelry_shop.orders",
]
if PROMETHEUS_ENABLED:
    INSTALLED_APPS += [
        # django_prometheus's AppConfig without its start-time DB query (the migration
        # gauges are computed at scrape time instead).
        "jewelry_monitoring_django.apps.DjangoPrometheusConfig",
        # protected /metrics and the setup checks (app/jewelry-monitoring-django)
        "jewelry_monitoring_django",
    ]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
if PROMETHEUS_ENABLED:
    MIDDLEWARE = [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        *MIDDLEWARE,
        # upstream subclass with a bounded `method` label
        "jewelry_monitoring_django.middleware.PrometheusAfterMiddleware",
    ]

ROOT_URLCONF = "jewelry_shop.urls"
WSGI_APPLICATION = "jewelry_shop.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "jewelry_shop" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

DATABASES = {
    "default": parse_database_url(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        instrumented=PROMETHEUS_ENABLED,
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
CACHE_TIMEOUT = int(os.environ.get("CACHE_TIMEOUT", "300"))
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": (
                "jewelry_monitoring_django.cache.RedisCache"
                if PROMETHEUS_ENABLED
                else "django_redis.cache.RedisCache"
            ),
            "LOCATION": REDIS_URL,
            "TIMEOUT": CACHE_TIMEOUT,
            "KEY_PREFIX": "jewelry",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "SOCKET_CONNECT_TIMEOUT": 2,
                "SOCKET_TIMEOUT": 2,
                # A cache outage degrades to misses instead of 500s.
                "IGNORE_EXCEPTIONS": env_bool("CACHE_IGNORE_EXCEPTIONS", True),
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": (
                "jewelry_monitoring_django.cache.LocMemCache"
                if PROMETHEUS_ENABLED
                else "django.core.cache.backends.locmem.LocMemCache"
            ),
            "LOCATION": "jewelry-shop",
            "TIMEOUT": CACHE_TIMEOUT,
        }
    }
DJANGO_REDIS_LOG_IGNORED_EXCEPTIONS = True

# --- Celery (namespace CELERY_) -------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
# Without a broker, run tasks inline so a bare `runserver` still confirms orders.
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", CELERY_BROKER_URL == "memory://")
CELERY_TASK_EAGER_PROPAGATES = True
# celery-exporter builds its metrics from task events: both switches are required.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "celery"

# --- django-prometheus ------------------------------------------------------------------
PROMETHEUS_EXPORT_MIGRATIONS = True
PROMETHEUS_LATENCY_BUCKETS = (
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
    float("inf"),
)
# Seconds a scrape may reuse the last migration count (jewelry_monitoring_django).
PROMETHEUS_MIGRATIONS_REFRESH_SECONDS = float(
    os.environ.get("PROMETHEUS_MIGRATIONS_REFRESH_SECONDS", "30")
)

# --- /metrics access control (jewelry_monitoring_django.access) -------------------------
# Each setting comes from the environment variable of the same name. Without them: loopback
# and private ranges, no proxied request, no credentials.
if "PROMETHEUS_METRICS_ALLOWED_IPS" in os.environ:
    PROMETHEUS_METRICS_ALLOWED_IPS = env_list("PROMETHEUS_METRICS_ALLOWED_IPS", [])
PROMETHEUS_METRICS_TRUSTED_PROXIES = env_list("PROMETHEUS_METRICS_TRUSTED_PROXIES", [])
PROMETHEUS_METRICS_CLIENT_IP_HEADER = os.environ.get("PROMETHEUS_METRICS_CLIENT_IP_HEADER", "")
PROMETHEUS_METRICS_BEARER_TOKEN = os.environ.get("PROMETHEUS_METRICS_BEARER_TOKEN", "")
PROMETHEUS_METRICS_BEARER_TOKEN_FILE = os.environ.get("PROMETHEUS_METRICS_BEARER_TOKEN_FILE", "")
PROMETHEUS_METRICS_BASIC_AUTH_USERNAME = os.environ.get(
    "PROMETHEUS_METRICS_BASIC_AUTH_USERNAME", ""
)
PROMETHEUS_METRICS_BASIC_AUTH_USERNAME_FILE = os.environ.get(
    "PROMETHEUS_METRICS_BASIC_AUTH_USERNAME_FILE", ""
)
PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD = os.environ.get(
    "PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD", ""
)
PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD_FILE = os.environ.get(
    "PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD_FILE", ""
)

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

if not DEBUG:
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # 4xx are expected traffic (load generator, scanners); keep them out of the log.
        "django.request": {"level": "ERROR"},
        "django.server": {"level": "WARNING"},
    },
}
