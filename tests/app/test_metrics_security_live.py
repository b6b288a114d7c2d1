"""/metrics access control on a real gunicorn process (REMOTE_ADDR from a real socket)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from devkit.shopapp import gunicorn_server, shop_env

pytestmark = pytest.mark.services


def test_loopback_not_in_allow_list_is_refused_even_with_spoofed_headers(shop_db: str) -> None:
    env = shop_env(shop_db, PROMETHEUS_METRICS_ALLOWED_IPS="10.0.0.0/8,fd00::/8")
    with gunicorn_server(env, workers=1) as app:
        for headers in (
            {},
            {"X-Forwarded-For": "10.1.1.1"},
            {"X-Real-IP": "10.1.1.1"},
            {"Forwarded": "for=10.1.1.1"},
        ):
            resp = requests.get(app.url + "/metrics", headers=headers, timeout=10)
            assert resp.status_code == 403, headers
            assert "django_" not in resp.text
        assert requests.get(app.url + "/healthz", timeout=10).status_code == 200


def test_bearer_token_from_mounted_file(shop_db: str, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cr3t-token\n")
    env = shop_env(shop_db, PROMETHEUS_METRICS_BEARER_TOKEN_FILE=str(token))
    with gunicorn_server(env, workers=1) as app:
        resp = requests.get(app.url + "/metrics", timeout=10)
        assert resp.status_code == 401
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="metrics"'
        ok = requests.get(
            app.url + "/metrics", timeout=10, headers={"Authorization": "Bearer s3cr3t-token"}
        )
        assert ok.status_code == 200 and "django_http_requests_total_by_method_total" in ok.text
        token.write_text("rotated")  # secret rotation, no restart
        stale = requests.get(
            app.url + "/metrics", timeout=10, headers={"Authorization": "Bearer s3cr3t-token"}
        )
        assert stale.status_code == 401


def test_ipv6_client(shop_db: str) -> None:
    env = shop_env(shop_db, PROMETHEUS_METRICS_ALLOWED_IPS="::1/128")
    with gunicorn_server(env, workers=1, host="::1") as app:
        assert app.url.startswith("http://[::1]:")
        assert requests.get(app.url + "/metrics", timeout=10).status_code == 200
    env = shop_env(shop_db, PROMETHEUS_METRICS_ALLOWED_IPS="127.0.0.0/8,2001:db8::/32")
    with gunicorn_server(env, workers=1, host="::1") as app:
        assert requests.get(app.url + "/metrics", timeout=10).status_code == 403
