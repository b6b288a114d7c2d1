"""Fixtures for the jewelry shop tests.

* In-process Django (``django_setup``): settings from a clean environment with a temporary
  SQLite database, migrated once per session. For unit tests with the Django test client.
* Real services (marker ``services``): session-scoped PostgreSQL and Redis from
  :mod:`devkit.services`, and ``shop`` -- gunicorn (2 workers) on them, migrated and
  seeded, with the deliberate error endpoint enabled.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devkit.services import PostgresService, RedisService, postgres_service, redis_service
from devkit.shopapp import ShopServer, gunicorn_server, manage, shop_env

# prometheus_client picks single- vs multi-process mode when first imported.
os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
os.environ.pop("prometheus_multiproc_dir", None)

# In-process Django must see a deterministic environment, whatever the caller exported.
_DJANGO_ENV_CLEARED = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "PROMETHEUS_METRICS_ALLOWED_IPS",
    "PROMETHEUS_METRICS_BEARER_TOKEN",
    "PROMETHEUS_METRICS_BEARER_TOKEN_FILE",
    "PROMETHEUS_METRICS_BASIC_AUTH_USERNAME",
    "PROMETHEUS_METRICS_BASIC_AUTH_USERNAME_FILE",
    "PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD",
    "PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD_FILE",
    "PROMETHEUS_METRICS_TRUSTED_PROXIES",
    "PROMETHEUS_METRICS_CLIENT_IP_HEADER",
    "PROMETHEUS_ENABLED",
    "WEB_CONCURRENCY",  # read by jewelry_monitoring_django's gunicorn check
    "GUNICORN_CMD_ARGS",
    "ENABLE_ERROR_ENDPOINT",
    "DEBUG",
)


@pytest.fixture(scope="session")
def django_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Django configured in this process on a migrated, seeded temporary SQLite DB.

    The environment changes are undone at the end of the session (Django keeps its
    settings object, which is all the in-process tests need).
    """
    saved = dict(os.environ)
    for var in _DJANGO_ENV_CLEARED:
        os.environ.pop(var, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "jewelry_shop.settings"
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp_path_factory.mktemp('django') / 'unit.sqlite3'}"
    import django
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()
    call_command("migrate", verbosity=0)
    call_command("seed_demo", products=10, customers=5, verbosity=0)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def client(django_setup: None):  # type: ignore[no-untyped-def]
    from django.core.cache import cache
    from django.test import Client

    cache.clear()
    return Client()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresService]:
    with postgres_service() as pg:
        yield pg


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisService]:
    with redis_service() as r:
        yield r


@pytest.fixture(scope="session")
def shop_db(postgres: PostgresService) -> str:
    """DSN of a migrated and seeded database for the ``shop`` server."""
    dsn = postgres.createdb("shop")
    env = shop_env(dsn)
    manage("migrate", "--noinput", env=env)
    manage("seed_demo", "--products", "30", "--customers", "10", env=env)
    return dsn


@pytest.fixture(scope="session")
def shop(shop_db: str, redis: RedisService) -> Iterator[ShopServer]:
    """gunicorn (2 workers, multiprocess metrics) on PostgreSQL + Redis."""
    env = shop_env(
        shop_db,
        redis.url_for(1),
        ENABLE_ERROR_ENDPOINT="true",
        # Celery tasks go to Redis db 2; no worker here, orders just stay pending.
        CELERY_BROKER_URL=redis.url_for(2),
    )
    with gunicorn_server(env, workers=2) as server:
        yield server
