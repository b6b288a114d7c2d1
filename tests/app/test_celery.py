"""A real Celery worker on the Redis broker confirms orders and emits task events."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests
from celery import Celery

from devkit.services import RedisService
from devkit.shopapp import ShopServer, celery_worker, shop_env

pytestmark = pytest.mark.services


def test_worker_confirms_orders_and_sends_task_events(
    shop: ShopServer, shop_db: str, redis: RedisService, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    broker = redis.url_for(2)  # the shop fixture's CELERY_BROKER_URL
    events: list[str] = []
    receiver_app = Celery(broker=broker, set_as_current=False)
    stop = threading.Event()

    def listen() -> None:
        with receiver_app.connection() as conn:
            recv = receiver_app.events.Receiver(
                conn, handlers={"*": lambda event: events.append(event["type"])}
            )
            while not stop.is_set():
                try:
                    recv.capture(limit=None, timeout=1, wakeup=False)
                except (TimeoutError, OSError):
                    continue

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1)

    log = tmp_path / "worker.log"
    env = shop_env(shop_db, redis.url_for(1), CELERY_BROKER_URL=broker)
    try:
        with celery_worker(env, log):
            # Events are broadcast, not queued: the order (whose task-sent the shop emits)
            # waits until the listener has heard the worker (online, or a heartbeat every
            # 2 s), so it is subscribed.
            def heard_the_worker() -> bool:
                return any(kind.startswith("worker-") for kind in events)

            listening = time.monotonic() + 60
            while not heard_the_worker() and time.monotonic() < listening:
                time.sleep(0.2)
            assert heard_the_worker(), log.read_text()[-3000:]
            customer = requests.post(
                shop.url + "/api/customers/",
                json={"email": f"celery-{uuid.uuid4().hex}@example.com", "name": "Cel"},
                timeout=10,
            ).json()
            product = requests.get(shop.url + "/api/products/?limit=1", timeout=10).json()[
                "results"
            ][0]
            order = requests.post(
                shop.url + "/api/orders/",
                json={
                    "customer": customer["id"],
                    "items": [{"product": product["id"], "quantity": 1}],
                },
                timeout=10,
            ).json()
            assert order["status"] == "pending"
            deadline = time.monotonic() + 60
            status = "pending"
            while time.monotonic() < deadline:
                status = requests.get(f"{shop.url}/api/orders/{order['id']}/", timeout=10).json()[
                    "status"
                ]
                if status == "confirmed" and "task-succeeded" in events:
                    break
                time.sleep(0.3)
            assert status == "confirmed", log.read_text()[-3000:]
            # task-sent comes from the producer (task_send_sent_event), the rest from the
            # worker (worker_send_task_events) -- what celery-exporter needs.
            for kind in ("task-sent", "task-received", "task-started", "task-succeeded"):
                assert kind in events, (kind, sorted(set(events)))
    finally:
        stop.set()
        listener.join(timeout=5)
