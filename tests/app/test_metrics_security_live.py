"""/metrics access control on a real gunicorn process (REMOTE_ADDR from a real socket)."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
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
        # a request of the app's (its probe's /healthz is not counted): the family exists
        assert requests.get(app.url + "/api/materials/", timeout=10).status_code == 200
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


@contextlib.contextmanager
def cgnat_peer() -> Iterator[tuple[str, str, str]]:
    """A network namespace of this test's own, joined to the host by a veth pair on a /30 of
    the RFC 6598 shared space (what EKS custom networking gives pods): yields (namespace,
    host address, peer address). Nothing is routed anywhere but between the two ends."""
    tag = secrets.token_hex(3)
    netns, host_if, peer_if = f"jm-django-{tag}", f"jmdj{tag}h", f"jmdj{tag}n"
    host, peer = "100.64.77.1", "100.64.77.2"
    route = subprocess.run(
        ["ip", "route", "show", "100.64.77.0/30"], capture_output=True, text=True
    )
    assert route.stdout.strip() == "", f"100.64.77.0/30 is already routed here: {route.stdout}"
    steps = [
        ["ip", "netns", "add", netns],
        ["ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if],
        ["ip", "link", "set", peer_if, "netns", netns],
        ["ip", "addr", "add", f"{host}/30", "dev", host_if],
        ["ip", "link", "set", host_if, "up"],
        ["ip", "-n", netns, "addr", "add", f"{peer}/30", "dev", peer_if],
        ["ip", "-n", netns, "link", "set", peer_if, "up"],
        ["ip", "-n", netns, "link", "set", "lo", "up"],
    ]
    try:
        for step in steps:
            subprocess.run(step, check=True, capture_output=True, timeout=30)
        yield netns, host, peer
    finally:
        subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=30)


def _status_from(netns: str, url: str) -> int:
    """The status of GET ``url`` from inside ``netns`` (its only address towards the app is
    the peer's)."""
    script = (
        "import urllib.error, urllib.request\n"
        "try:\n"
        f"    print(urllib.request.urlopen({url!r}, timeout=10).status)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code)\n"
    )
    result = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(result.stdout)


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_a_scrape_from_the_shared_address_space_is_allowed_by_default(shop_db: str) -> None:
    """EKS custom networking puts pods (Prometheus among them) in 100.64.0.0/10: the default
    allow-list takes it (issue 18.7). The peer's own /32 is let in and 10.0.0.0/8 alone is not:
    the app sees the scrape come from the shared space."""
    with cgnat_peer() as (netns, host, peer):
        for allowed, status in ((None, 200), (f"{peer}/32", 200), ("10.0.0.0/8", 403)):
            # POD_IP as in Kubernetes: the app accepts its own address as Host.
            extra = {"POD_IP": host}
            if allowed:
                extra["PROMETHEUS_METRICS_ALLOWED_IPS"] = allowed
            with gunicorn_server(shop_env(shop_db, **extra), workers=1, host=host) as app:
                assert _status_from(netns, app.url + "/metrics") == status, allowed
