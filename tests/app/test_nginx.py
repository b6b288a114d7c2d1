"""app/deploy/nginx.conf.template in front of a real gunicorn, with stub_status."""

from __future__ import annotations

import http.client
import re
from pathlib import Path

import pytest
import requests

from devkit.services import nginx_service
from devkit.shopapp import APP_DIR, ShopServer

pytestmark = pytest.mark.services

TEMPLATE = APP_DIR / "deploy" / "nginx.conf.template"


def render(template: Path, values: dict[str, str]) -> str:
    """What the nginx image's envsubst step does: replace only the given ${VARS}."""
    text = template.read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    assert not re.search(r"\$\{[A-Z_]+\}", text), "unfilled placeholder"
    return text


def test_nginx_proxies_the_shop_and_exposes_stub_status(shop: ShopServer) -> None:
    def site(port: int, status_port: int) -> str:
        return render(
            TEMPLATE,
            {
                "APP_UPSTREAM": f"127.0.0.1:{shop.port}",
                "NGINX_PORT": f"127.0.0.1:{port}",
                "NGINX_STATUS_LISTEN": f"127.0.0.1:{status_port}",
            },
        )

    with nginx_service(site) as ngx:
        status_port = ngx.status_port
        page = requests.get(ngx.url + "/", timeout=10)
        assert page.status_code == 200 and "Products" in page.text
        api = requests.get(ngx.url + "/api/materials/", timeout=10)
        assert api.status_code == 200 and api.json()["results"]
        # never proxied: metrics, probes, the error endpoint
        assert requests.get(ngx.url + "/metrics", timeout=10).status_code == 403
        assert requests.get(ngx.url + "/healthz", timeout=10).status_code == 404
        assert requests.get(ngx.url + "/debug/error", timeout=10).status_code == 404
        # stub_status only on the internal listener
        assert requests.get(ngx.url + "/stub_status", timeout=10).status_code in (403, 404)
        status = requests.get(f"http://127.0.0.1:{status_port}/stub_status", timeout=10)
        assert status.status_code == 200
        assert status.text.startswith("Active connections:")
        assert re.search(r"^\s*\d+ \d+ \d+\s*$", status.text, re.M)  # accepts handled requests
        assert requests.get(f"http://127.0.0.1:{status_port}/", timeout=10).status_code == 404


# An Ingress controller as ingress-nginx configures one: it forwards every path, /metrics
# included, from its own (private) pod address, naming the client in X-Forwarded-For.
INGRESS = """
server {
    listen 127.0.0.1:%(port)d;
    location / {
        proxy_pass http://127.0.0.1:%(app_port)d;
        proxy_bind %(ingress_ip)s;
        proxy_set_header Host $host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
    }
}
"""
INGRESS_IP = "127.0.0.3"  # the Ingress controller's pod address
PROMETHEUS_IP = "127.0.0.2"  # Prometheus's pod address, scraping the app directly


def get_from(source_ip: str, host: str, port: int, path: str, **headers: str) -> tuple[int, str]:
    """GET with the connection's source address bound to ``source_ip`` (a loopback alias)."""
    conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source_ip, 0))
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def test_metrics_through_an_ingress_is_refused_and_a_direct_scrape_is_not(shop: ShopServer) -> None:
    """The default allow-list holds the private ranges, so it admits the Ingress's own pod
    address: only the forwarding header tells that the scrape came from outside."""

    def site(port: int, _: int) -> str:
        return INGRESS % {"port": port, "app_port": shop.port, "ingress_ip": INGRESS_IP}

    with nginx_service(site) as ingress:
        page, _ = get_from("127.0.0.1", ingress.host, ingress.port, "/api/materials/")
        assert page == 200  # the Ingress works for the shop
        for headers in ({}, {"X-Forwarded-For": "203.0.113.50"}):  # an outside client
            status, body = get_from("127.0.0.1", ingress.host, ingress.port, "/metrics", **headers)
            assert status == 403, (headers, body[:200])
            assert "django_" not in body
    # The same peer address without a proxy in between is allowed: the header made the difference.
    for source in (PROMETHEUS_IP, INGRESS_IP):
        status, body = get_from(source, shop.host, shop.port, "/metrics")
        assert status == 200 and "django_http_requests_total_by_method_total" in body
