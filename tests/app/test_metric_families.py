"""The app's metric families (app/METRICS.md lists them), measured on a real gunicorn (2
workers, prometheus multiprocess mode) backed by real PostgreSQL and Redis.

Each test performs an action and asserts the metric appears and moves by the expected
amount. Notes on exactness:

* a scrape of /metrics is not app traffic: the after-middleware's metrics leave it out
  (django-prometheus's before-middleware still counts it, as every request);
* DB statement counts are lower bounds (connection health checks, the migration
  collector) except where noted.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from devkit.shopapp import Scrape, ShopServer, scrape

pytestmark = pytest.mark.services

# The shop's PROMETHEUS_LATENCY_BUCKETS (settings.py): a latency SLO's threshold must be one
# of them (jewelry_monitoring.spec.LATENCY_BUCKETS).
LATENCY_BUCKETS = [
    "0.01", "0.025", "0.05", "0.075", "0.1", "0.25", "0.5", "0.75", "1.0",
    "2.5", "5.0", "7.5", "10.0", "25.0", "50.0", "75.0", "+Inf",
]  # fmt: skip
PG = {"alias": "default", "vendor": "postgresql"}


def metrics(shop: ShopServer) -> Scrape:
    s = scrape(shop.url + "/metrics")
    assert s.status == 200
    return s


def delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


def post(shop: ShopServer, path: str, data: object, method: str = "POST") -> requests.Response:
    return requests.request(method, shop.url + path, json=data, timeout=10)


def new_product(shop: ShopServer, stock: int = 10) -> dict:  # type: ignore[type-arg]
    tag = uuid.uuid4().hex[:8]
    resp = post(
        shop,
        "/api/products/",
        {
            "sku": f"M-{tag}",
            "name": f"Metric {tag}",
            "slug": f"m-{tag}",
            "price": "12.00",
            "stock": stock,
        },
    )
    assert resp.status_code == 201, resp.text
    return resp.json()  # type: ignore[no-any-return]


def test_requests_by_method(shop: ShopServer) -> None:
    p = new_product(shop)
    before = metrics(shop)
    for q in (1, 2, 3):
        assert post(shop, f"/api/inventory/{p['id']}/", {"quantity": q}, "PUT").ok
    for _ in range(4):
        requests.get(shop.url + "/api/materials/", timeout=10)
    after = metrics(shop)
    name = "django_http_requests_total_by_method_total"
    assert delta(before, after, name, method="PUT") == 3
    assert delta(before, after, name, method="GET") == 4  # the scrapes are not counted
    assert (
        delta(before, after, "django_http_requests_total_by_transport_total", transport="http")
        == 3 + 4
    )


def test_requests_by_view_transport_method(shop: ShopServer) -> None:
    before = metrics(shop)
    for _ in range(3):
        requests.get(shop.url + "/api/collections/", timeout=10)
    after = metrics(shop)
    name = "django_http_requests_total_by_view_transport_method_total"
    assert delta(before, after, name, view="collection-list", transport="http", method="GET") == 3
    assert delta(before, after, name, view="prometheus-django-metrics", method="GET") == 0


def test_responses_by_status_and_by_status_view_method(shop: ShopServer) -> None:
    before = metrics(shop)
    for _ in range(2):
        assert requests.get(shop.url + "/api/orders/987654321/", timeout=10).status_code == 404
    assert requests.get(shop.url + "/no/such/route", timeout=10).status_code == 404
    assert requests.get(shop.url + "/debug/error", timeout=10).status_code == 500
    assert requests.get(shop.url + "/api/collections/", timeout=10).status_code == 200
    after = metrics(shop)
    by_status = "django_http_responses_total_by_status_total"
    assert delta(before, after, by_status, status="404") == 3
    assert delta(before, after, by_status, status="500") == 1
    # 200: the collection list only (the scrapes are not app traffic)
    assert delta(before, after, by_status, status="200") == 1
    svm = "django_http_responses_total_by_status_view_method_total"
    assert delta(before, after, svm, status="404", view="order-detail", method="GET") == 2
    assert delta(before, after, svm, status="404", view="<unnamed view>", method="GET") == 1
    assert delta(before, after, svm, status="500", view="deliberate-error", method="GET") == 1
    assert (
        delta(before, after, "django_http_exceptions_total_by_type_total", type="DeliberateError")
        == 1
    )
    assert (
        delta(before, after, "django_http_exceptions_total_by_view_total", view="deliberate-error")
        == 1
    )


def test_latency_histograms_use_the_settings_buckets(shop: ShopServer) -> None:
    before = metrics(shop)
    for _ in range(3):
        requests.get(shop.url + "/api/materials/", timeout=10)
    after = metrics(shop)
    name = "django_http_requests_latency_seconds_by_view_method"
    les = [
        lb["le"]
        for lb, _ in after.samples(name + "_bucket")
        if lb["view"] == "material-list" and lb["method"] == "GET"
    ]
    assert les == LATENCY_BUCKETS
    assert delta(before, after, name + "_count", view="material-list", method="GET") == 3
    assert (
        delta(before, after, name + "_bucket", view="material-list", method="GET", le="+Inf") == 3
    )
    assert delta(before, after, name + "_sum", view="material-list", method="GET") > 0
    incl = "django_http_requests_latency_including_middlewares_seconds"
    assert [lb["le"] for lb, _ in after.samples(incl + "_bucket")] == LATENCY_BUCKETS
    # 3 requests + the first scrape (observed when its response left the middleware)
    assert delta(before, after, incl + "_count") == 4
    assert [
        lb["le"]
        for lb, _ in after.samples("django_db_query_duration_seconds_bucket")
        if lb["vendor"] == "postgresql"
    ] == LATENCY_BUCKETS


def test_request_and_response_body_bytes(shop: ShopServer) -> None:
    payload = json.dumps({"email": f"b-{uuid.uuid4().hex}@example.com", "name": "x" * 150})
    before = metrics(shop)
    resp = requests.post(
        shop.url + "/api/customers/",
        data=payload,
        timeout=10,
        headers={"Content-Type": "application/json"},
    )
    assert resp.status_code == 201
    after = metrics(shop)
    req = "django_http_requests_body_total_bytes"
    assert delta(before, after, req + "_sum") == len(payload)
    assert delta(before, after, req + "_count") == 1  # the POST (the scrapes are not counted)
    res = "django_http_responses_body_total_bytes"
    assert delta(before, after, res + "_sum") == len(resp.content)
    assert delta(before, after, res + "_count") == 1
    les = [lb["le"] for lb, _ in after.samples(req + "_bucket")]
    assert les[0] == "0.0" and les[1] == "1.0" and les[-1] == "+Inf" and len(les) == 32


def test_ajax_requests(shop: ShopServer) -> None:
    """Counted from the X-Requested-With header, as Django's old ``is_ajax()`` did."""
    before = metrics(shop)
    for _ in range(2):
        requests.get(
            shop.url + "/api/materials/", headers={"X-Requested-With": "XMLHttpRequest"}, timeout=10
        )
    requests.get(shop.url + "/api/materials/", timeout=10)
    requests.get(shop.url + "/api/materials/", headers={"X-Requested-With": "fetch"}, timeout=10)
    after = metrics(shop)
    assert delta(before, after, "django_http_ajax_requests_total") == 2


def test_db_execute_and_duration(shop: ShopServer) -> None:
    before = metrics(shop)
    for _ in range(3):
        requests.get(shop.url + "/api/materials/", timeout=10)
    after = metrics(shop)
    executed = delta(before, after, "django_db_execute_total", **PG)
    assert executed >= 3
    # no executemany in between: one duration observation per statement
    assert delta(before, after, "django_db_query_duration_seconds_count", **PG) == executed
    assert delta(before, after, "django_db_query_duration_seconds_sum", **PG) > 0
    assert after.value("django_db_new_connections_total", **PG) >= 1


def test_db_execute_many(shop: ShopServer) -> None:
    products = [new_product(shop, stock=1) for _ in range(3)]
    before = metrics(shop)
    resp = post(
        shop,
        "/api/inventory/restock/",
        {"items": [{"product": p["id"], "quantity": 2} for p in products]},
    )
    assert resp.status_code == 200
    after = metrics(shop)
    # django-prometheus counts executemany() per parameter set, in both counters
    assert delta(before, after, "django_db_execute_many_total", **PG) == 3
    assert delta(before, after, "django_db_execute_total", **PG) >= 3
    for p in products:
        assert (
            requests.get(f"{shop.url}/api/inventory/{p['id']}/", timeout=10).json()["quantity"] == 3
        )


def test_db_errors_real_unique_violation(shop: ShopServer) -> None:
    email = f"dup-{uuid.uuid4().hex}@example.com"
    assert post(shop, "/api/customers/", {"email": email, "name": "A"}).status_code == 201
    before = metrics(shop)
    assert post(shop, "/api/customers/", {"email": email, "name": "B"}).status_code == 409
    after = metrics(shop)
    # On PostgreSQL the label is psycopg's class (UniqueViolation), not Django's
    # IntegrityError: the counter wraps the driver cursor, below Django's error mapping.
    assert delta(before, after, "django_db_errors_total", type="UniqueViolation", **PG) == 1
    assert after.has("django_db_errors_total", type="UniqueViolation", **PG)


def test_cache_get_hit_miss_set_delete(shop: ShopServer) -> None:
    p = new_product(shop)
    url = f"{shop.url}/api/products/{p['id']}/"
    # creating the product invalidated its key; the POST response filled it (1 miss + set)
    before = metrics(shop)
    requests.get(url, timeout=10)  # hit
    assert post(shop, f"/api/products/{p['id']}/", {"price": "13.00"}, "PATCH").ok  # delete
    assert requests.get(url, timeout=10).json()["price"] == "13.00"  # miss + set
    requests.get(url, timeout=10)  # hit
    after = metrics(shop)
    r = {"backend": "redis"}
    assert delta(before, after, "django_cache_get_total", **r) == 3
    assert delta(before, after, "django_cache_get_hits_total", **r) == 2
    assert delta(before, after, "django_cache_get_misses_total", **r) == 1
    assert delta(before, after, "django_cache_set_total", **r) == 1
    assert delta(before, after, "django_cache_delete_total", **r) == 1
    assert delta(before, after, "django_cache_get_fail_total", **r) == 0


def test_model_inserts_updates_deletes(shop: ShopServer) -> None:
    before = metrics(shop)
    p = new_product(shop)  # product insert + stock insert (instance saves)
    assert post(shop, f"/api/products/{p['id']}/", {"name": "Renamed"}, "PATCH").ok
    assert post(shop, f"/api/inventory/{p['id']}/", {"quantity": 4}, "PUT").ok
    assert requests.delete(f"{shop.url}/api/products/{p['id']}/", timeout=10).status_code == 204
    after = metrics(shop)
    assert delta(before, after, "django_model_inserts_total", model="product") == 1
    assert delta(before, after, "django_model_inserts_total", model="stock") == 1
    assert delta(before, after, "django_model_updates_total", model="product") == 1
    assert delta(before, after, "django_model_updates_total", model="stock") == 1
    assert delta(before, after, "django_model_deletes_total", model="product") == 1
    # the stock row went with it (ON DELETE CASCADE via the collector): not counted
    assert delta(before, after, "django_model_deletes_total", model="stock") == 0


def test_order_placement_metrics(shop: ShopServer) -> None:
    p = new_product(shop, stock=5)
    c = post(
        shop, "/api/customers/", {"email": f"o-{uuid.uuid4().hex}@example.com", "name": "O"}
    ).json()
    before = metrics(shop)
    resp = post(
        shop, "/api/orders/", {"customer": c["id"], "items": [{"product": p["id"], "quantity": 2}]}
    )
    assert resp.status_code == 201
    after = metrics(shop)
    assert delta(before, after, "django_model_inserts_total", model="order") == 1
    assert delta(before, after, "django_model_inserts_total", model="order_item") == 1
    assert delta(before, after, "django_model_updates_total", model="stock") == 1
    assert requests.get(f"{shop.url}/api/inventory/{p['id']}/", timeout=10).json()["quantity"] == 3


def test_migrations_applied_unapplied(shop: ShopServer) -> None:
    s = metrics(shop)
    applied = s.samples("django_migrations_applied_total")
    unapplied = s.samples("django_migrations_unapplied_total")
    assert [lb for lb, _ in applied] == [{"connection": "default"}]  # no pid label
    assert applied[0][1] > 10  # contenttypes + auth + shop apps
    assert unapplied == [({"connection": "default"}, 0.0)]


def test_no_pid_labels_and_no_created_series(shop: ShopServer) -> None:
    s = metrics(shop)
    for family in s.families.values():
        for sample in family.samples:
            assert "pid" not in sample.labels, sample
            assert not sample.name.endswith("_created"), sample


def test_made_up_http_methods_do_not_create_series(shop: ShopServer) -> None:
    for verb in ("BREW", "FOO1", "FOO2"):
        requests.request(verb, shop.url + "/api/materials/", timeout=10)
    s = metrics(shop)
    for name in (
        "django_http_requests_latency_seconds_by_view_method_count",
        "django_http_requests_total_by_method_total",
        "django_http_responses_total_by_status_view_method_total",
    ):
        methods = {lbl["method"] for lbl, _ in s.samples(name)}
        assert not methods & {"BREW", "FOO1", "FOO2"}, (name, methods)
        assert "<invalid method>" in methods
