"""Fixtures for the jewelry shop tests.

* In-process Django (``django_setup``): settings from a clean environment with a temporary
  SQLite database, migrated once per session. For unit tests with the Django test client.
* Real services (marker ``services``): session-scoped PostgreSQL and Redis from
  :mod:`devkit.services`, and ``shop`` -- gunicorn (2 workers) on them, migrated and
  seeded, with the deliberate error endpoint enabled.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.services import PostgresService, RedisService, postgres_service, redis_service
from devkit.shopapp import ShopServer, gunicorn_server, manage, shop_env

_TMP = Path(tempfile.mkdtemp(prefix="jewelry-tests-"))

# In-process Django must see a deterministic environment, whatever the caller exported.
for _var in (
    "DATABASE_URL",
    "REDIS_URL",
    "PROMETHEUS_MULTIPROC_DIR",
    "prometheus_multiproc_dir",
    "CELERY_BROKER_URL",
    "PROMETHEUS_METRICS_ALLOWED_IPS",
    "METRICS_BEARER_TOKEN",
    "METRICS_BEARER_TOKEN_FILE",
    "METRICS_BASIC_AUTH_USERNAME",
    "METRICS_BASIC_AUTH_PASSWORD",
    "METRICS_TRUSTED_PROXIES",
    "METRICS_CLIENT_IP_HEADER",
    "PROMETHEUS_ENABLED",
):
    os.environ.pop(_var, None)
os.environ["DJANGO_SETTINGS_MODULE"] = "jewelry_shop.settings"
os.environ["DATABASE_URL"] = f"sqlite:///{_TMP / 'unit.sqlite3'}"


@pytest.fixture(scope="session")
def django_setup() -> Iterator[None]:
    """Django configured in this process on a migrated, seeded temporary SQLite DB."""
    import django
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    django.setup()
    setup_test_environment()
    call_command("migrate", verbosity=0)
    call_command("seed_demo", products=10, customers=5, verbosity=0)
    yield


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
