"""Configuration by environment variables."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from devkit.shopapp import APP_DIR, PYTHON, shop_env
from jewelry_shop.env import env_bool, env_list, parse_database_url

PROBE = """
import json, django
from django.conf import settings
django.setup()
from django.urls import reverse, NoReverseMatch
try:
    metrics_url = reverse("prometheus-django-metrics")
except NoReverseMatch:
    metrics_url = None
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "ENGINE": settings.DATABASES["default"]["ENGINE"],
    "CACHE": settings.CACHES["default"]["BACKEND"],
    "EAGER": settings.CELERY_TASK_ALWAYS_EAGER,
    "BROKER": settings.CELERY_BROKER_URL,
    "EVENTS": [settings.CELERY_WORKER_SEND_TASK_EVENTS, settings.CELERY_TASK_SEND_SENT_EVENT],
    "MIDDLEWARE": settings.MIDDLEWARE,
    "APPS": settings.INSTALLED_APPS,
    "HOSTS": settings.ALLOWED_HOSTS,
    "BUCKETS": [str(b) for b in settings.PROMETHEUS_LATENCY_BUCKETS],
    "EXPORT_MIGRATIONS": settings.PROMETHEUS_EXPORT_MIGRATIONS,
    "metrics_url": metrics_url,
}))
"""


def probe(**env: str) -> dict:  # type: ignore[type-arg]
    res = subprocess.run(
        [PYTHON, "-c", PROBE],
        cwd=APP_DIR,
        env=shop_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_bare_environment_is_a_working_dev_setup() -> None:
    s = probe()
    assert s["DEBUG"] is False
    assert s["ENGINE"] == "django_prometheus.db.backends.sqlite3"
    assert s["CACHE"] == "jewelry_monitoring_django.cache.LocMemCache"
    assert s["EAGER"] is True and s["BROKER"] == "memory://"
    assert s["EVENTS"] == [True, True]
    assert s["MIDDLEWARE"][0] == "django_prometheus.middleware.PrometheusBeforeMiddleware"
    assert s["MIDDLEWARE"][-1] == "jewelry_monitoring_django.middleware.PrometheusAfterMiddleware"
    assert "jewelry_monitoring_django.apps.DjangoPrometheusConfig" in s["APPS"]
    assert "jewelry_monitoring_django" in s["APPS"]
    assert s["BUCKETS"] == [
        "0.01",
        "0.025",
        "0.05",
        "0.075",
        "0.1",
        "0.25",
        "0.5",
        "0.75",
        "1.0",
        "2.5",
        "5.0",
        "7.5",
        "10.0",
        "25.0",
        "50.0",
        "75.0",
        "inf",
    ]
    assert s["EXPORT_MIGRATIONS"] is True
    assert s["metrics_url"] == "/metrics"


def test_services_from_environment() -> None:
    s = probe(
        database_url="postgresql://u:p@db.example:5433/shop",
        redis_url="redis://cache:6379/0",
        ALLOWED_HOSTS="shop.example.com",
        POD_IP="10.1.2.3",
        DEBUG="1",
    )
    assert s["ENGINE"] == "django_prometheus.db.backends.postgresql"
    assert s["CACHE"] == "jewelry_monitoring_django.cache.RedisCache"
    assert s["EAGER"] is False and s["BROKER"] == "redis://cache:6379/0"
    assert s["HOSTS"] == ["shop.example.com", "10.1.2.3"]
    assert s["DEBUG"] is True


def test_prometheus_can_be_switched_off_for_the_benchmark() -> None:
    s = probe(redis_url="redis://cache:6379/0", PROMETHEUS_ENABLED="false")
    assert s["ENGINE"] == "django.db.backends.sqlite3"
    assert s["CACHE"] == "django_redis.cache.RedisCache"
    assert not any("prometheus" in m.lower() for m in s["MIDDLEWARE"])
    assert not any("prometheus" in a.lower() for a in s["APPS"])
    assert s["metrics_url"] is None


def test_parse_database_url() -> None:
    pg = parse_database_url("postgres://us%40r:p%3Ass@h:6543/d?sslmode=require&conn_max_age=0")
    assert pg["ENGINE"] == "django_prometheus.db.backends.postgresql"
    assert (pg["USER"], pg["PASSWORD"], pg["HOST"], pg["PORT"], pg["NAME"]) == (
        "us@r",
        "p:ss",
        "h",
        "6543",
        "d",
    )
    assert pg["OPTIONS"] == {"sslmode": "require"} and pg["CONN_MAX_AGE"] == 0
    assert parse_database_url("sqlite:////abs/x.db")["NAME"] == "/abs/x.db"
    assert parse_database_url("sqlite:///:memory:")["NAME"] == ":memory:"
    plain = parse_database_url("postgresql://h/d", instrumented=False)
    assert plain["ENGINE"] == "django.db.backends.postgresql"
    with pytest.raises(ValueError):
        parse_database_url("mysql://h/d")


def test_env_helpers() -> None:
    assert env_bool("X", True, {}) is True
    assert env_bool("X", True, {"X": "off"}) is False
    with pytest.raises(ValueError):
        env_bool("X", True, {"X": "maybe"})
    assert env_list("L", ["a"], {}) == ["a"]
    assert env_list("L", ["a"], {"L": " 10.0.0.0/8, ,::1 "}) == ["10.0.0.0/8", "::1"]


def test_manage_check_passes_on_a_bare_machine(tmp_path: Path) -> None:
    env = shop_env(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    res = subprocess.run(
        [PYTHON, "manage.py", "check"],
        cwd=APP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert "no issues" in res.stdout


def test_empty_multiproc_dir_means_single_process_metrics(tmp_path: Path) -> None:
    """manifests/dev's migrate and Celery worker set PROMETHEUS_MULTIPROC_DIR to "" to undo
    the image's value (Kubernetes cannot unset it). prometheus_client only checks that the
    variable exists, so "" once meant multiprocess files in the working directory: a crash
    on the pods' read-only root filesystem."""
    count_a_model_write = (
        "import django; django.setup(); from prometheus_client import values; "
        "from jewelry_shop.catalog.models import Material; print(values.ValueClass.__name__)"
    )
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = shop_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", PROMETHEUS_MULTIPROC_DIR="")
    result = subprocess.run(
        [PYTHON, "-c", count_a_model_write],
        cwd=workdir,
        env={**env, "PYTHONPATH": str(APP_DIR)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "MutexValue"
    assert not list(workdir.iterdir()), "metric files were written into the working directory"
