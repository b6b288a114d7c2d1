"""app/deploy/nginx.conf.template in front of a real gunicorn, with stub_status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from devkit.services import free_port, nginx_service
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
    port, status_port = free_port(), free_port()
    conf = render(
        TEMPLATE,
        {
            "APP_UPSTREAM": f"127.0.0.1:{shop.port}",
            "NGINX_PORT": f"127.0.0.1:{port}",
            "NGINX_STATUS_LISTEN": f"127.0.0.1:{status_port}",
        },
    )
    with nginx_service(conf, port=port) as ngx:
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
