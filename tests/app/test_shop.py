"""Product behaviour through the Django test client (in-process, SQLite, local-memory cache)."""

from __future__ import annotations

import json
import uuid

import pytest
from django.test import override_settings


def _post(client, path, data, method="post"):  # type: ignore[no-untyped-def]
    return getattr(client, method)(path, json.dumps(data), content_type="application/json")


def _new_product(client, stock=5, price="100.00"):  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:8]
    resp = _post(
        client,
        "/api/products/",
        {
            "sku": f"T-{tag}",
            "name": f"Test Ring {tag}",
            "slug": f"test-ring-{tag}",
            "price": price,
            "stock": stock,
            "collection": "aurora",
            "materials": ["platinum", "diamond"],
        },
    )
    assert resp.status_code == 201, resp.content
    return resp.json()


def _new_customer(client):  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:8]
    resp = _post(client, "/api/customers/", {"email": f"c-{tag}@example.com", "name": "C"})
    assert resp.status_code == 201
    return resp.json()


def test_html_pages(client) -> None:  # type: ignore[no-untyped-def]
    product = _new_product(client)
    page = client.get("/")
    assert page.status_code == 200
    assert product["name"] in page.content.decode()
    detail = client.get(f"/products/{product['slug']}/")
    assert detail.status_code == 200
    assert "100.00 EUR" in detail.content.decode()
    assert client.get("/products/nope/").status_code == 404


def test_catalog_api(client) -> None:  # type: ignore[no-untyped-def]
    assert {m["slug"] for m in client.get("/api/materials/").json()["results"]} >= {"platinum"}
    assert len(client.get("/api/collections/").json()["results"]) == 3
    product = _new_product(client)
    assert product["materials"] == ["diamond", "platinum"]
    assert product["collection"] == "aurora" and product["stock"] == 5
    listing = client.get("/api/products/?collection=aurora&limit=500").json()
    assert product["id"] in [p["id"] for p in listing["results"]]
    assert _post(client, "/api/products/", {"sku": "x"}).status_code == 400
    dup = dict(sku=product["sku"], name="x", slug="other-" + product["slug"], price="1")
    assert _post(client, "/api/products/", dup).status_code == 409
    assert _post(client, "/api/products/", {**dup, "sku": "n", "price": "-1"}).status_code == 400
    assert (
        client.post("/api/products/", "{not json", content_type="application/json").status_code
        == 400
    )
    assert client.put("/api/products/").status_code == 405


def test_product_detail_is_cached_and_invalidated_on_update(client) -> None:  # type: ignore[no-untyped-def]
    from django.core.cache import cache

    from jewelry_shop.catalog.cache import product_key

    product = _new_product(client)
    key = product_key(product["id"])
    cache.delete(key)
    assert client.get(f"/api/products/{product['id']}/").json()["price"] == "100.00"
    assert cache.get(key)["price"] == "100.00"  # filled on miss
    resp = _post(client, f"/api/products/{product['id']}/", {"price": "150.50"}, "patch")
    assert resp.status_code == 200
    assert cache.get(key) is None  # invalidated by the update
    assert client.get(f"/api/products/{product['id']}/").json()["price"] == "150.50"
    assert "150.50 EUR" in client.get(f"/products/{product['slug']}/").content.decode()
    # stock changes invalidate too
    assert (
        _post(client, f"/api/inventory/{product['id']}/", {"quantity": 9}, "put").status_code == 200
    )
    assert client.get(f"/api/products/{product['id']}/").json()["stock"] == 9
    # deactivated products disappear
    _post(client, f"/api/products/{product['id']}/", {"is_active": False}, "patch")
    assert client.get(f"/api/products/{product['id']}/").status_code == 404


def test_order_decrements_stock_atomically(client) -> None:  # type: ignore[no-untyped-def]
    a, b = _new_product(client, stock=3, price="10.00"), _new_product(client, stock=1, price="5.00")
    customer = _new_customer(client)
    resp = _post(
        client,
        "/api/orders/",
        {
            "customer": customer["id"],
            "items": [{"product": a["id"], "quantity": 2}, {"product": b["id"], "quantity": 1}],
        },
    )
    assert resp.status_code == 201, resp.content
    order = resp.json()
    assert order["total"] == "25.00"
    # No broker configured -> the confirmation task ran eagerly after commit.
    assert client.get(f"/api/orders/{order['id']}/").json()["status"] == "confirmed"
    assert client.get(f"/api/inventory/{a['id']}/").json()["quantity"] == 1
    assert client.get(f"/api/inventory/{b['id']}/").json()["quantity"] == 0
    # a's stock suffices, b's does not: nothing at all changes
    resp = _post(
        client,
        "/api/orders/",
        {
            "customer": customer["id"],
            "items": [{"product": a["id"], "quantity": 1}, {"product": b["id"], "quantity": 1}],
        },
    )
    assert resp.status_code == 409
    assert client.get(f"/api/inventory/{a['id']}/").json()["quantity"] == 1
    listed = client.get(f"/api/orders/?customer={customer['id']}").json()["results"]
    assert [o["id"] for o in listed] == [order["id"]]
    assert (
        _post(
            client,
            "/api/orders/",
            {"customer": 999999, "items": [{"product": a["id"], "quantity": 1}]},
        ).status_code
        == 404
    )
    assert (
        _post(client, "/api/orders/", {"customer": customer["id"], "items": []}).status_code == 400
    )
    # ordered products cannot be deleted (PROTECT) -> 409, product stays
    assert client.delete(f"/api/products/{a['id']}/").status_code == 409
    assert client.get(f"/api/products/{a['id']}/").status_code == 200


def test_restock_and_delete(client) -> None:  # type: ignore[no-untyped-def]
    p = _new_product(client, stock=2)
    resp = _post(
        client, "/api/inventory/restock/", {"items": [{"product": p["id"], "quantity": 5}]}
    )
    assert resp.status_code == 200
    assert client.get(f"/api/products/{p['id']}/").json()["stock"] == 7
    assert _post(client, "/api/inventory/restock/", {"items": []}).status_code == 400
    assert client.delete(f"/api/products/{p['id']}/").status_code == 204
    assert client.get(f"/api/products/{p['id']}/").status_code == 404
    assert client.get(f"/api/inventory/{p['id']}/").status_code == 404


def test_customers(client) -> None:  # type: ignore[no-untyped-def]
    c = _new_customer(client)
    assert client.get(f"/api/customers/{c['id']}/").json()["email"] == c["email"]
    dup = _post(client, "/api/customers/", {"email": c["email"].upper(), "name": "Again"})
    assert dup.status_code == 409
    assert _post(client, "/api/customers/", {"email": "bad", "name": "x"}).status_code == 400
    assert client.get("/api/customers/999999/").status_code == 404


def test_health_and_readiness(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readiness_fails_when_database_is_down(client) -> None:  # type: ignore[no-untyped-def]
    from unittest import mock

    from django.db import OperationalError
    from django.db.backends.base.base import BaseDatabaseWrapper

    with mock.patch.object(BaseDatabaseWrapper, "cursor", side_effect=OperationalError("down")):
        resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json()["databases"] == {"default": "OperationalError"}
    assert client.get("/healthz").status_code == 200


def test_error_endpoint_is_disabled_by_default(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/debug/error").status_code == 404
    with override_settings(ENABLE_ERROR_ENDPOINT=True):
        client.raise_request_exception = False
        assert client.get("/debug/error").status_code == 500


def test_seed_demo_is_idempotent(django_setup: None) -> None:
    from django.core.management import call_command

    from jewelry_shop.catalog.models import Product

    before = Product.objects.count()
    call_command("seed_demo", products=10, customers=5, verbosity=0)
    assert Product.objects.count() == before


@pytest.mark.parametrize(
    "url", ["http://8.8.8.8:80", "http://example.com", "https://127.0.0.1", "http://10.0.0.1:8000"]
)
def test_loadgen_refuses_non_loopback(url: str) -> None:
    from jewelry_shop.loadgen import LoopbackOnlyError, ensure_loopback, main

    with pytest.raises(LoopbackOnlyError):
        ensure_loopback(url)
    assert main([url, "--requests", "1", "--duration", "1"]) == 2


def test_loadgen_budgets_are_mandatory_and_capped() -> None:
    from jewelry_shop.loadgen import LoadGenerator

    for kwargs in (
        {"max_requests": 0, "duration": 1},
        {"max_requests": 10**7, "duration": 1},
        {"max_requests": 1, "duration": 0},
        {"max_requests": 1, "duration": 10**6},
    ):
        with pytest.raises(ValueError):
            LoadGenerator("http://127.0.0.1:1", **kwargs)
    assert LoadGenerator("http://localhost:1", max_requests=1, duration=1).host == "localhost"


@pytest.mark.parametrize(
    "extra",
    [{"price": "NaN"}, {"price": "1.001"}, {"price": "1e9"}, {"stock": "many"}, {"stock": -1}],
)
def test_product_validation(client, extra) -> None:  # type: ignore[no-untyped-def]
    tag = uuid.uuid4().hex[:8]
    body = {"sku": f"V-{tag}", "name": "V", "slug": f"v-{tag}", "price": "1.00", **extra}
    assert _post(client, "/api/products/", body).status_code == 400
