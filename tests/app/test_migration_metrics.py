"""Migration gauges: correct when pods start before the migrate job, and when the DB is down.

django-prometheus computes them once at process start (and, in multiprocess mode, as
``pid``-labelled gauges that outlive their workers). The app recomputes them at scrape
time instead (see jewelry_monitoring_django/migration_gauges.py).
"""

from __future__ import annotations

import uuid

import pytest
import requests

from devkit.port_thief import PortThief
from devkit.ports import refusing_port
from devkit.services import PostgresService
from devkit.shopapp import gunicorn_server, manage, scrape, shop_env

pytestmark = pytest.mark.services


def test_pod_started_before_migrate_job(postgres: PostgresService) -> None:
    name = f"premigrate_{uuid.uuid4().hex[:8]}"
    dsn = postgres.createdb(name)
    env = shop_env(dsn, PROMETHEUS_MIGRATIONS_REFRESH_SECONDS="0")
    try:
        with gunicorn_server(env, workers=2) as server:
            # The app is up (liveness) and the DB answers (readiness) -- just not migrated.
            assert requests.get(server.url + "/readyz", timeout=10).status_code == 200
            s = scrape(server.url + "/metrics")
            unapplied = s.samples("django_migrations_unapplied_total")
            assert [lbl for lbl, _ in unapplied] == [{"connection": "default"}]
            assert unapplied[0][1] > 10
            assert s.value("django_migrations_applied_total", connection="default") == 0

            manage("migrate", "--noinput", env=env)  # the migrate Job runs later

            for _ in range(4):  # whichever worker answers, no restart needed
                s = scrape(server.url + "/metrics")
                assert s.samples("django_migrations_unapplied_total") == [
                    ({"connection": "default"}, 0.0)
                ]
                assert s.value("django_migrations_applied_total", connection="default") > 10
    finally:
        postgres.dropdb(name)


def test_app_starts_while_database_is_down(port_thief: PortThief) -> None:
    # Another process takes the next port the devkit chooses: the database's dead port must
    # not be one that can be taken (a listener that never answers made /readyz hang).
    port_thief.steal(1)
    with refusing_port() as port:
        dead = shop_env(f"postgresql://shop:pw@127.0.0.1:{port}/shop")
        with gunicorn_server(dead, workers=1) as server:
            assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
            ready = requests.get(server.url + "/readyz", timeout=10)
            assert ready.status_code == 503
            assert ready.json()["databases"]["default"] == "OperationalError"
            s = scrape(server.url + "/metrics")
            assert s.status == 200  # the scrape itself never fails because of the DB
            assert not s.samples("django_migrations_unapplied_total")
            assert s.value("django_db_new_connection_errors_total", vendor="postgresql") >= 1


UPSTREAM_PROBE = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from django_prometheus.migrations import ExportMigrations
ExportMigrations()  # what upstream's AppConfig.ready() does in every process
raw = CollectorRegistry()
multiprocess.MultiProcessCollector(raw)
print(generate_latest(raw).decode())
print("=====")
from jewelry_monitoring_django.views import build_registry
print(generate_latest(build_registry()).decode())
"""


def test_upstream_gauges_carry_pid_and_are_replaced(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from prometheus_client.parser import text_string_to_metric_families

    from devkit.shopapp import APP_DIR, PYTHON

    prom = tmp_path / "prom"
    prom.mkdir()
    env = shop_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", PROMETHEUS_MULTIPROC_DIR=str(prom))
    res = subprocess.run(
        [PYTHON, "-c", UPSTREAM_PROBE],
        cwd=APP_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    upstream, ours = res.stdout.split("=====")

    def migration_samples(text: str) -> list[dict[str, str]]:
        return [
            dict(s.labels)
            for f in text_string_to_metric_families(text)
            for s in f.samples
            if s.name.startswith("django_migrations_")
        ]

    up = migration_samples(upstream)
    assert up and all("pid" in labels for labels in up)  # one series per process
    assert migration_samples(ours) == [{"connection": "default"}, {"connection": "default"}]
