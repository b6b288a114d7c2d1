"""Alerts that cannot fire, with the real shop and a real Celery worker and celery-exporter.

Two resources' worth of the operator's objects, scraped by a real Prometheus (2.42) that
loads their rules: one shop as it ships (PROMETHEUS_EXPORT_MIGRATIONS, Celery task events),
one with both prerequisites turned off in its settings. After real traffic (pages, an order
whose confirmation is a Celery task), the operator's check (``observe``) must say which
alerts of the second cannot fire and what to enable, and nothing of the kind for the first.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from devkit import prometheus as prom
from devkit.services import redis_service
from devkit.shopapp import ShopServer, celery_worker, gunicorn_server, manage, shop_env
from jewelry_monitoring.builders.common import Owner, child_name
from jewelry_monitoring.builders.desired import desired_objects
from jewelry_monitoring.observe import Observation, Observer
from jewelry_monitoring.spec import JewelryMonitoringSpec
from jewelry_monitoring.status import JewelryMonitoringStatus
from jewelry_monitoring.which_prometheus import Asked

pytestmark = pytest.mark.services

NAMESPACE = "shop"
SHIPPED, TURNED_OFF = "as-shipped", "prerequisites-off"
SPEC: dict[str, Any] = {
    "app": {"podSelector": {"app": "shop"}, "interval": "1s", "scrapeTimeout": "1s"},
    "exporters": {
        "celery": {
            "enabled": True,
            "interval": "5s",
            "scrapeTimeout": "5s",
            "brokerUrl": {"name": "celery", "key": "url"},
        }
    },
}
# The shop's settings with the two prerequisites off, as an app that never set them.
OFF_SETTINGS = """from jewelry_shop.settings import *  # noqa: F403

PROMETHEUS_EXPORT_MIGRATIONS = False
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_SEND_SENT_EVENT = False
"""


@dataclass
class Shop:
    owner: Owner
    objects: list[dict[str, Any]]
    server: ShopServer


@dataclass
class World:
    prometheus: prom.Prometheus
    shops: dict[str, Shop]


def _owner(name: str) -> Owner:
    spec = JewelryMonitoringSpec.model_validate(SPEC)
    return Owner(name, NAMESPACE, f"0a1b2c3d-0000-4000-8000-{uuid.uuid4().hex[:12]}", spec)


def _order(shop: ShopServer) -> None:
    """Pages (database queries, a product read through the cache) and an order, whose
    confirmation is a Celery task."""
    for path in ("/", "/api/products/?limit=5", "/api/products/?limit=5"):
        requests.get(shop.url + path, timeout=10)
    customer = requests.post(
        shop.url + "/api/customers/",
        json={"email": f"inputs-{uuid.uuid4().hex}@example.com", "name": "In"},
        timeout=10,
    ).json()
    product = requests.get(shop.url + "/api/products/?limit=1", timeout=10).json()["results"][0]
    for _ in range(2):  # the product's data is read through the cache
        requests.get(f"{shop.url}/api/products/{product['id']}/", timeout=10)
    response = requests.post(
        shop.url + "/api/orders/",
        json={"customer": customer["id"], "items": [{"product": product["id"], "quantity": 1}]},
        timeout=10,
    )
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    work = tmp_path_factory.mktemp("alert-inputs")
    (work / "shop_prerequisites_off.py").write_text(OFF_SETTINGS)
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(redis_service())
        shops: dict[str, Shop] = {}
        targets: dict[str, list[str]] = {}
        for index, name in enumerate((SHIPPED, TURNED_OFF)):
            broker = redis.url_for(2 + index)
            settings = (
                {"DJANGO_SETTINGS_MODULE": "shop_prerequisites_off", "PYTHONPATH": str(work)}
                if name == TURNED_OFF
                else {}
            )
            env = shop_env(
                f"sqlite:///{work / f'{name}.sqlite3'}",
                redis.url_for(10 + index),
                CELERY_BROKER_URL=broker,
                **settings,
            )
            manage("migrate", "--noinput", env=env)
            manage("seed_demo", "--products", "5", "--customers", "2", env=env)
            server = stack.enter_context(gunicorn_server(env, workers=1))
            stack.enter_context(celery_worker(env, work / f"{name}-worker.log", "warning"))
            exporter = stack.enter_context(prom.celery_exporter(broker))
            owner = _owner(name)
            objects = desired_objects(owner, frozenset({"ServiceMonitor", "PrometheusRule"}))
            shops[name] = Shop(owner, objects, server)
            targets[child_name(name, "app-metrics")] = [f"{server.host}:{server.port}"]
            targets[child_name(name, "celery-exporter")] = [f"127.0.0.1:{exporter.port}"]
        objects = [o for shop in shops.values() for o in shop.objects]
        rules = {
            "groups": [g for shop in shops.values() for g in prom.rule_file(shop.objects)["groups"]]
        }
        config = prom.prometheus_config(objects, targets, rule_files=[])
        prometheus = stack.enter_context(prom.prometheus_server(config, rules))
        time.sleep(3)  # the worker is up before the order's task is sent
        for shop in shops.values():
            _order(shop.server)
        yield World(prometheus, shops)


def _observe(world: World, name: str, settled: Any, timeout: float = 90) -> Observation:
    """The operator's check of ``name`` once ``settled(observation)`` holds."""
    shop = world.shops[name]
    observer = Observer()
    deadline = time.monotonic() + timeout
    while True:
        observation = observer.observe(
            shop.owner,
            shop.objects,
            [],
            Asked(url=world.prometheus.url),
            "",
            JewelryMonitoringStatus(),
            0.0,  # ask again every time
        )
        if settled(observation) or time.monotonic() > deadline:
            return observation
        time.sleep(2)


def test_alerts_without_their_prerequisites_are_named_with_what_to_enable(world: World) -> None:
    def both_named(observation: Observation) -> bool:
        """Both alerts named, each for its prerequisite (not, at first, for a target that
        was not scraped yet)."""
        listed = "\n".join(observation.cannot_fire)
        return (
            "DjangoUnappliedMigrations: no django_migrations_unapplied_total" in listed
            and "CeleryTaskFailures: not seen yet: no celery_task_received_total" in listed
        )

    observation = _observe(world, TURNED_OFF, both_named)
    verdict = observation.conditions["AlertsCanFire"]
    print(f"\nAlertsCanFire={verdict.status}/{verdict.reason}: {verdict.message}")
    assert (verdict.status, verdict.reason) == ("False", "InputsMissing"), verdict
    listed = "\n".join(observation.cannot_fire)
    assert "DjangoUnappliedMigrations: no django_migrations_unapplied_total" in listed
    assert "PROMETHEUS_EXPORT_MIGRATIONS = True" in listed
    assert "CeleryTaskFailures: not seen yet: no celery_task_received_total" in listed
    assert "worker_send_task_events = True" in listed
    assert observation.conditions["RulesLoaded"].status == "True"


def test_the_shop_as_shipped_has_every_input(world: World) -> None:
    def settled(observation: Observation) -> bool:
        return observation.conditions["AlertsCanFire"].status == "True"

    observation = _observe(world, SHIPPED, settled)
    verdict = observation.conditions["AlertsCanFire"]
    assert verdict.status == "True", verdict
    assert observation.cannot_fire == []
    assert observation.requests <= 2 + 3  # two scrape pools, rules, series (no SLO)
