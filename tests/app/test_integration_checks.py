"""jewelry_monitoring_django's system checks, one by one, in the shop's configured Django
(whose own setup passes them all: see test_settings.test_manage_check_passes_on_a_bare_machine).
tests/django_integration shows them through `manage.py check` in a new user's project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.test import override_settings
from django_prometheus.cache.backends import locmem as upstream_locmem
from jewelry_monitoring_django import checks, gunicorn_config

from devkit.shopapp import APP_DIR

pytestmark = pytest.mark.usefixtures("django_setup")


def ids(messages: list) -> list[str]:  # type: ignore[type-arg]
    return [m.id.rsplit(".", 1)[1] for m in messages]


def test_the_shop_passes_every_check() -> None:
    assert [m for check in checks.ALL for m in check()] == []


def test_middleware_subclasses_count_and_order_is_enforced() -> None:
    from django.conf import settings

    shop = list(settings.MIDDLEWARE)
    assert shop[-1] == "jewelry_monitoring_django.middleware.PrometheusAfterMiddleware"
    swapped = [shop[-1], *shop[1:-1], shop[0]]
    with override_settings(MIDDLEWARE=swapped):
        messages = checks.middleware_order()
    assert ids(messages) == ["E002", "E003"]
    assert f"at position {len(shop)} of {len(shop)}" in messages[0].msg
    with override_settings(MIDDLEWARE=shop[1:-1]):
        assert [m.msg.split(" is ")[1][:7] for m in checks.middleware_order()] == ["missing"] * 2
    upstream_after = [*shop[:-1], "django_prometheus.middleware.PrometheusAfterMiddleware"]
    with override_settings(MIDDLEWARE=upstream_after):
        assert checks.middleware_order() == []


def test_unwrapped_cache_names_its_wrapper() -> None:
    caches = {
        "default": {"BACKEND": "jewelry_monitoring_django.cache.LocMemCache"},  # counts all
        "native": {"BACKEND": "django.core.cache.backends.redis.RedisCache"},
        "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},  # nothing to count
        "custom": {"BACKEND": "myapp.cache.Custom"},
    }
    with override_settings(CACHES=caches):
        messages = checks.caches_wrapped()
    assert ids(messages) == ["W005", "W005"]
    assert messages[0].hint == (
        'Set its BACKEND to "jewelry_monitoring_django.cache.NativeRedisCache".'
    )
    assert "jewelry_monitoring_django.cache" in messages[1].hint


class ReadsOnly(upstream_locmem.LocMemCache):
    """Someone's own subclass of a django-prometheus backend."""


def test_a_cache_counting_reads_only_names_the_one_counting_writes_too() -> None:
    """django-prometheus's own backends count gets only: the dashboard's set and delete
    rates would stay empty."""
    caches = {
        "upstream": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"},
        "custom": {"BACKEND": f"{__name__}.ReadsOnly"},
    }
    with override_settings(CACHES=caches):
        messages = checks.caches_wrapped()
    assert ids(messages) == ["W011", "W011"]
    assert "counts reads but not writes" in messages[0].msg
    assert messages[0].hint == 'Set its BACKEND to "jewelry_monitoring_django.cache.LocMemCache".'
    # Its own code kept: the hint is the mixin, not another backend.
    assert "jewelry_monitoring_django.cache.SetDeleteCounting first" in messages[1].hint


@pytest.mark.parametrize(
    ("config_file", "argv", "environ", "workers"),
    [
        (None, [], {}, 1),
        (None, [], {"WEB_CONCURRENCY": "4"}, 4),
        ("workers = 4\n", [], {}, 4),
        ("workers = 4\n", [], {"WEB_CONCURRENCY": "8"}, 4),  # the file wins over the default
        ("workers = 4\n", ["-w", "2"], {}, 2),  # the command line wins over the file
        ("workers = 4\n", [], {"GUNICORN_CMD_ARGS": "--workers=3 --threads 2"}, 3),
        (None, ["--workers", "3", "myproject.wsgi"], {}, 3),
        (None, [], {"GUNICORN_CMD_ARGS": "-w5"}, 5),
        ("import os\nworkers = int(os.environ.get('N', '6'))\n", [], {}, 6),
    ],
)
def test_gunicorn_worker_count_as_gunicorn_reads_it(
    tmp_path: Path,
    config_file: str | None,
    argv: list[str],
    environ: dict[str, str],
    workers: int,
) -> None:
    if config_file is not None:  # gunicorn's default config file: ./gunicorn.conf.py
        (tmp_path / "gunicorn.conf.py").write_text(config_file)
    env = {"PATH": os.environ["PATH"], **environ}
    assert gunicorn_config.read(argv, env, str(tmp_path)).workers == workers


@pytest.fixture
def gunicorn_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An environment with no gunicorn settings, in an empty directory."""
    for name in ("PROMETHEUS_MULTIPROC_DIR", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_workers_of_a_config_file_need_the_multiprocess_dir(gunicorn_env: Path) -> None:
    assert checks.multiprocess_dir() == []
    (gunicorn_env / "gunicorn.conf.py").write_text("workers = 4\n")
    [error] = checks.multiprocess_dir()
    assert error.id == "jewelry_monitoring_django.W006" and "4 workers" in error.msg
    assert "PROMETHEUS_MULTIPROC_DIR" in error.hint
    assert "from jewelry_monitoring_django.gunicorn import child_exit" in error.hint


def test_multiprocess_mode_without_the_packages_hooks_is_reported(
    gunicorn_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(gunicorn_env / "prom"))
    (gunicorn_env / "gunicorn.conf.py").write_text("workers = 4\n")
    [warning] = checks.multiprocess_dir()
    assert warning.id == "jewelry_monitoring_django.W012"
    assert "never folded" in warning.msg


def test_the_shops_gunicorn_config_passes(
    gunicorn_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It sets PROMETHEUS_MULTIPROC_DIR itself and imports the hooks.
    monkeypatch.chdir(APP_DIR)
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert gunicorn_config.read().workers == 3
    assert checks.multiprocess_dir() == []


def test_a_broken_gunicorn_config_is_reported(gunicorn_env: Path) -> None:
    (gunicorn_env / "gunicorn.conf.py").write_text("workers = int('four')\n")
    [warning] = checks.multiprocess_dir()
    assert warning.id == "jewelry_monitoring_django.W013"
    assert "worker count is unknown" in warning.msg


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"PROMETHEUS_METRICS_ALLOWED_IPS": ["10.0.0.0/33"]}, ["E007"]),
        ({"PROMETHEUS_METRICS_ALLOWED_IPS": "10.0.0.0/8"}, ["E007"]),  # a string, not a list
        ({"PROMETHEUS_METRICS_TRUSTED_PROXIES": ["proxy.local"]}, ["E007"]),
        ({"PROMETHEUS_METRICS_BASIC_AUTH_USERNAME": "prometheus"}, ["E008"]),
        ({"PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD_FILE": "/run/secrets/p"}, ["E008"]),
        (
            {
                "PROMETHEUS_METRICS_BASIC_AUTH_USERNAME": "prometheus",
                "PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD_FILE": "/run/secrets/p",
            },
            [],
        ),
        ({"PROMETHEUS_METRICS_ALLOWED_IPS": ["10.0.0.0/8", "fd00::/8", "127.0.0.1"]}, []),
    ],
)
def test_access_settings(overrides: dict[str, object], expected: list[str]) -> None:
    with override_settings(**overrides):
        assert ids(checks.access_settings()) == expected


def test_alerts_that_could_never_fire_are_named() -> None:
    # The shop imports its Celery app (jewelry_shop/__init__.py) with both event switches on.
    from jewelry_shop.celery import app

    assert checks.alert_inputs() == []
    with override_settings(PROMETHEUS_EXPORT_MIGRATIONS=False):
        [warning] = checks.alert_inputs()
    assert warning.id == "jewelry_monitoring_django.W014"
    assert "DjangoUnappliedMigrations" in warning.msg
    saved = app.conf.worker_send_task_events
    app.conf.worker_send_task_events = False
    try:
        [warning] = checks.alert_inputs()
    finally:
        app.conf.worker_send_task_events = saved
    assert warning.id == "jewelry_monitoring_django.W015"
    assert "'jewelry_shop' has worker_send_task_events off" in warning.msg
    assert "CELERY_WORKER_SEND_TASK_EVENTS = True" in warning.hint
