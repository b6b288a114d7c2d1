"""A whole monitored shop on loopback, watched by a real Prometheus built from operator output.

``stack`` (session-scoped, marker ``services``) starts, in temp dirs on free ports:
PostgreSQL and Redis; the shop under gunicorn (2 workers, multiprocess metrics, deliberate
5xx endpoint on) migrated and seeded; a second gunicorn "pod" on a database whose ``orders``
migration is not applied (what a pod sees before the migrate Job ran); a Celery worker with
task events on the Redis broker; nginx from app/deploy/nginx.conf.template with stub_status;
the postgres, redis and Celery exporters at the CR's versions and Debian's nginx exporter
(see devkit.prometheus); a webhook receiver, Alertmanager, and Prometheus whose scrape jobs
and rule file are translated from ``desired_objects`` of the CR spec ``SPEC`` (see
devkit.prometheus), plus the node exporter at the chart's version with its Service and
ServiceMonitor as the chart renders them (the node exporter is the release's, not the CR's).
Everything is stopped and deleted afterwards.

The Celery exporter is danihodovic/celery-exporter itself (PyPI ``prometheus-exporter-celery``,
the version the CR's default image pins), in its own virtualenv, on the worker's broker.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from devkit import prometheus as prom
from devkit.operator_process import render_chart
from devkit.services import (
    LOOPBACK,
    NginxService,
    PostgresService,
    RedisService,
    nginx_service,
    postgres_service,
    redis_service,
)
from devkit.shopapp import (
    APP_DIR,
    ShopServer,
    celery_worker,
    gunicorn_server,
    manage,
    shop_env,
)
from jewelry_monitoring.builders.common import Owner, child_name
from jewelry_monitoring.builders.desired import desired_objects
from jewelry_monitoring.builders.rules import KNOWN_ALERTS
from jewelry_monitoring.spec import JewelryMonitoringSpec, semantic_problems

NAMESPACE = "shop-prod"
CR_NAME = "jewelry"
# The chart's release, for the node exporter it runs.
RELEASE, RELEASE_NAMESPACE = "jm", "monitoring"
ERROR_THRESHOLD = 0.2

# The CR under test: everything on, scraped every 1-2s, the alerts the tests wait for with
# `for: 0s`. Everything here is the operator's own spec; nothing is patched afterwards.
SPEC: dict[str, Any] = {
    "app": {"podSelector": {"app": "jewelry-shop"}, "interval": "1s", "scrapeTimeout": "1s"},
    "exporters": {
        "postgres": {
            "enabled": True,
            "interval": "2s",
            "scrapeTimeout": "2s",
            "dataSource": {"name": "pg", "key": "dsn"},
        },
        "redis": {"enabled": True, "interval": "2s", "scrapeTimeout": "2s"},
        "nginx": {"enabled": True, "interval": "2s", "scrapeTimeout": "2s"},
        # celery-exporter answers /metrics after two worker inspections of 1s each: >= 2s.
        "celery": {
            "enabled": True,
            "interval": "5s",
            "scrapeTimeout": "5s",
            "brokerUrl": {"name": "celery", "key": "url"},
        },
    },
    "alerts": {
        "overrides": {
            "HighErrorRate": {"for": "0s", "threshold": ERROR_THRESHOLD},
            "DjangoUnappliedMigrations": {"for": "0s"},
            "RedisExporterDown": {"for": "0s"},
            "RedisDown": {"for": "0s"},
        }
    },
    # The CR's own dashboards too: the live tests check their queries and those of the chart.
    "dashboards": {"enabled": True},
    "slos": {
        "window": "30d",
        "availability": {"objective": 99.0},
        # 1.0 exercises the rules' le matcher for "1.0" (prometheus_client) vs "1" (Prometheus 3).
        "latency": {"objective": 95.0, "thresholdSeconds": 1.0},
    },
}


def service_name(component: str) -> str:
    """The Service (= job label) of a component, as the operator names it."""
    return child_name(CR_NAME, "app-metrics" if component == "app" else f"{component}-exporter")


def make_owner() -> Owner:
    spec = JewelryMonitoringSpec.model_validate(SPEC)
    problems = semantic_problems(spec, KNOWN_ALERTS)
    assert not problems, problems
    return Owner(CR_NAME, NAMESPACE, "0a1b2c3d-0000-4000-8000-000000000001", spec)


def make_objects(owner: Owner) -> list[dict[str, Any]]:
    return desired_objects(owner, frozenset({"ServiceMonitor", "PrometheusRule"}))


def chart_node_exporter_objects() -> list[dict[str, Any]]:
    """The node exporter's Service and ServiceMonitor, rendered by helm from the chart."""
    rendered = render_chart(
        RELEASE,
        RELEASE_NAMESPACE,
        {
            "nodeExporter.enabled": True,
            "nodeExporter.serviceMonitor": {"enabled": True, "interval": "2s"},
        },
    )
    return [
        o
        for o in rendered
        if o["kind"] in ("Service", "ServiceMonitor")
        and o["metadata"]["labels"].get("app.kubernetes.io/name") == "node-exporter"
    ]


@dataclass(frozen=True)
class CR:
    """The CR under test, for test modules (conftest is not importable under importlib)."""

    namespace: str = NAMESPACE
    name: str = CR_NAME
    spec: dict[str, Any] = field(default_factory=lambda: SPEC)
    error_threshold: float = ERROR_THRESHOLD

    def service_name(self, component: str) -> str:
        return service_name(component)

    def owner(self) -> Owner:
        return make_owner()

    def objects(self) -> list[dict[str, Any]]:
        return make_objects(make_owner())


@pytest.fixture(scope="session")
def cr() -> CR:
    return CR()


@dataclass
class Stack:
    owner: Owner
    objects: list[dict[str, Any]]
    prometheus: prom.Prometheus
    webhook: prom.WebhookReceiver
    postgres: PostgresService
    redis: RedisService
    shop: ShopServer
    pending_shop: ShopServer
    pending_env: dict[str, str]
    nginx: NginxService
    celery_broker: str
    exporters: dict[str, prom.Process]
    jobs: dict[str, str] = field(default_factory=dict)  # component of the CR -> job label
    node_job: str = ""  # the chart's node exporter, in RELEASE_NAMESPACE
    cr: CR = field(default_factory=CR)

    @property
    def api(self) -> prom.PrometheusAPI:
        return self.prometheus.api

    def sel(self, component: str) -> str:
        return f'namespace="{NAMESPACE}",job="{self.jobs[component]}"'


def _nginx_site(upstream: str, port: int, status_port: int) -> str:
    template = (APP_DIR / "deploy" / "nginx.conf.template").read_text()
    return (
        template.replace("${APP_UPSTREAM}", upstream)
        .replace("${NGINX_PORT}", f"{LOOPBACK}:{port}")
        .replace("${NGINX_STATUS_LISTEN}", f"{LOOPBACK}:{status_port}")
    )


def _require_binaries() -> None:
    needed = [
        prom.PROMETHEUS,
        prom.ALERTMANAGER,
        prom.POSTGRES_EXPORTER,
        prom.REDIS_EXPORTER,
        prom.NGINX_EXPORTER,
        prom.NODE_EXPORTER,
        str(prom.celery_exporter_python()),
    ]
    missing = [b for b in needed if not os.access(b, os.X_OK)]
    if missing or not shutil.which("nginx"):
        pytest.fail(f"missing binaries (tests/toolchain/setup installs them): {missing}")


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    _require_binaries()
    work = tmp_path_factory.mktemp("monitoring-stack")
    owner = make_owner()
    objects = make_objects(owner)
    with contextlib.ExitStack() as es:
        pg = es.enter_context(postgres_service())
        redis = es.enter_context(redis_service())
        shop_dsn = pg.createdb("shop")
        broker = redis.url_for(2)
        base = {"CELERY_BROKER_URL": broker, "PROMETHEUS_MIGRATIONS_REFRESH_SECONDS": "1"}
        env = shop_env(shop_dsn, redis.url_for(1), ENABLE_ERROR_ENDPOINT="true", **base)
        manage("migrate", "--noinput", env=env)
        manage("seed_demo", "--products", "20", "--customers", "10", env=env)
        # A "pod started before the migrate Job": every app migrated but orders.
        pending_dsn = pg.createdb("pending")
        pending_env = shop_env(pending_dsn, redis.url_for(3), **base)
        manage("migrate", "--noinput", env=pending_env)
        manage("migrate", "orders", "zero", "--noinput", env=pending_env)

        shop = es.enter_context(gunicorn_server(env, workers=2))
        pending_shop = es.enter_context(gunicorn_server(pending_env, workers=1))
        es.enter_context(celery_worker(env, work / "celery-worker.log", loglevel="warning"))
        nginx = es.enter_context(
            nginx_service(functools.partial(_nginx_site, f"{LOOPBACK}:{shop.port}"))
        )
        pg_dsn = f"postgresql://{pg.user}:{pg.password}@{pg.host}:{pg.port}/shop?sslmode=disable"
        exporters = {
            "postgres": es.enter_context(prom.postgres_exporter(pg_dsn)),
            "redis": es.enter_context(prom.redis_exporter(f"redis://{redis.host}:{redis.port}")),
            "nginx": es.enter_context(
                prom.nginx_exporter(f"http://{LOOPBACK}:{nginx.status_port}/stub_status")
            ),
            "celery": es.enter_context(prom.celery_exporter(broker)),
        }
        node_objects = chart_node_exporter_objects()
        [node_job] = [o["metadata"]["name"] for o in node_objects if o["kind"] == "Service"]
        node = es.enter_context(prom.node_exporter())
        targets = {
            service_name("app"): [f"{LOOPBACK}:{shop.port}", f"{LOOPBACK}:{pending_shop.port}"],
            **{service_name(name): [f"{LOOPBACK}:{p.port}"] for name, p in exporters.items()},
            node_job: [f"{LOOPBACK}:{node.port}"],
        }
        webhook = es.enter_context(prom.webhook_receiver())
        alertmanager = es.enter_context(prom.alertmanager_server(webhook.url))
        config = prom.prometheus_config(
            [*objects, *node_objects],
            targets,
            rule_files=[],
            alertmanager=f"{LOOPBACK}:{alertmanager.port}",
        )
        prometheus = es.enter_context(prom.prometheus_server(config, prom.rule_file(objects)))
        yield Stack(
            owner=owner,
            objects=objects,
            prometheus=prometheus,
            webhook=webhook,
            postgres=pg,
            redis=redis,
            shop=shop,
            pending_shop=pending_shop,
            pending_env=pending_env,
            nginx=nginx,
            celery_broker=broker,
            exporters=exporters,
            jobs={c: service_name(c) for c in ("app", *exporters)},
            node_job=node_job,
        )
