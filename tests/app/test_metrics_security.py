"""/metrics access control (jewelry_monitoring_django.access): source address (CIDR allow-list,
proxied requests, trusted proxies) and auth, alone and through the shop's real view."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.test import override_settings
from jewelry_monitoring_django.access import (
    DEFAULT_ALLOWED_IPS,
    AccessPolicy,
    Credentials,
    forwarded_for,
    parse_ip,
    parse_networks,
)

DEFAULT = AccessPolicy.from_settings(SimpleNamespace())
PROXIED = AccessPolicy(
    allowed=parse_networks(["10.1.0.0/16", "2001:db8:1::/48"]),
    trusted_proxies=parse_networks(["10.0.0.5", "10.0.0.6", "2001:db8:ffff::/64"]),
    client_ip_header="X-Forwarded-For",
)


@pytest.mark.parametrize(
    ("remote", "allowed"),
    [
        ("127.0.0.1", True),
        ("10.2.3.4", True),
        ("172.31.255.255", True),
        ("172.32.0.1", False),
        ("192.168.1.1", True),
        ("100.64.0.1", True),  # RFC 6598 shared space: EKS custom networking's pods
        ("100.127.255.254", True),
        ("100.128.0.1", False),
        ("8.8.8.8", False),
        ("::1", True),
        ("fd12:3456::1", True),
        ("2001:db8::1", False),
        ("2600:1f14::1", False),  # a global IPv6 pod address: set the pod CIDR or a token
        ("::ffff:10.1.2.3", True),  # IPv4-mapped (dual-stack socket)
        ("::ffff:8.8.8.8", False),
        ("", False),
        ("garbage", False),
    ],
)
def test_default_allow_list(remote: str, allowed: bool) -> None:
    assert DEFAULT.ip_allowed({"REMOTE_ADDR": remote}) is allowed


def test_default_is_loopback_and_private_ranges() -> None:
    assert parse_networks(DEFAULT_ALLOWED_IPS) == DEFAULT.allowed
    assert DEFAULT.trusted_proxies == ()


@pytest.mark.parametrize(
    "header",
    [
        {"HTTP_X_FORWARDED_FOR": "127.0.0.1"},
        {"HTTP_X_FORWARDED_FOR": "203.0.113.9"},
        {"HTTP_FORWARDED": "for=203.0.113.9;proto=https"},
        {"HTTP_X_REAL_IP": "203.0.113.9"},
    ],
)
def test_proxied_request_from_untrusted_peer_is_refused(header: dict[str, str]) -> None:
    """An Ingress controller's pod address is private, so the allow-list alone lets it in:
    the forwarding header is what tells a proxied request from a direct scrape."""
    meta = {"REMOTE_ADDR": "10.244.0.7", **header}
    assert DEFAULT.client_ip(meta) is None
    assert not DEFAULT.ip_allowed(meta)
    assert DEFAULT.ip_allowed({"REMOTE_ADDR": "10.244.0.7"})  # the same peer, direct


def test_forwarded_header_from_untrusted_peer_is_refused_even_if_it_names_an_allowed_one() -> None:
    meta = {"REMOTE_ADDR": "10.9.9.9", "HTTP_X_FORWARDED_FOR": "10.1.0.1"}
    assert PROXIED.client_ip(meta) is None
    assert not PROXIED.ip_allowed(meta)


def test_trusted_proxy_without_the_configured_header_is_refused() -> None:
    meta = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_REAL_IP": "10.1.2.3"}
    assert PROXIED.client_ip(meta) is None
    assert PROXIED.client_ip({"REMOTE_ADDR": "10.0.0.5"}) == ipaddress.ip_address("10.0.0.5")


def test_forwarded_header_rfc7239() -> None:
    assert forwarded_for(
        'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8::17]:4711"'
    ) == [
        "192.0.2.60",
        '"[2001:db8::17]:4711"',
    ]
    policy = AccessPolicy(
        allowed=PROXIED.allowed,
        trusted_proxies=PROXIED.trusted_proxies,
        client_ip_header="Forwarded",
    )
    meta = {"REMOTE_ADDR": "10.0.0.5", "HTTP_FORWARDED": 'for="[2001:db8:1::7]:5555", for=10.0.0.6'}
    assert policy.client_ip(meta) == ipaddress.ip_address("2001:db8:1::7")
    assert policy.ip_allowed(meta)
    meta["HTTP_FORWARDED"] = "for=_hidden, for=10.0.0.6"  # obfuscated: unknown client
    assert not policy.ip_allowed(meta)


def test_forwarded_chain_walked_right_to_left() -> None:
    # client 10.1.2.3 -> proxy 10.0.0.6 -> proxy 10.0.0.5 -> app
    meta = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "10.1.2.3, 10.0.0.6"}
    assert PROXIED.client_ip(meta) == ipaddress.ip_address("10.1.2.3")
    assert PROXIED.ip_allowed(meta)


def test_forwarded_chain_spoofed_left_entries_do_not_help() -> None:
    # Attacker 8.8.8.8 prepends an allowed address; the trusted proxy appends the real one.
    meta = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "10.1.2.3, 8.8.8.8"}
    assert PROXIED.client_ip(meta) == ipaddress.ip_address("8.8.8.8")
    assert not PROXIED.ip_allowed(meta)


def test_forwarded_chain_garbage_is_refused() -> None:
    meta = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "10.1.2.3, not-an-ip"}
    assert PROXIED.client_ip(meta) is None
    assert not PROXIED.ip_allowed(meta)
    assert not PROXIED.ip_allowed({"REMOTE_ADDR": "10.0.0.5"})  # proxy itself not allowed


def test_forwarded_chain_ipv6() -> None:
    meta = {"REMOTE_ADDR": "2001:db8:ffff::1", "HTTP_X_FORWARDED_FOR": "[2001:db8:1::7]:5555"}
    assert PROXIED.client_ip(meta) == ipaddress.ip_address("2001:db8:1::7")
    assert PROXIED.ip_allowed(meta)


def test_parse_ip_forms() -> None:
    assert parse_ip("203.0.113.7:443") == ipaddress.ip_address("203.0.113.7")
    assert parse_ip("[::1]") == ipaddress.ip_address("::1")
    assert parse_ip("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert parse_ip(None) is None


def test_credentials() -> None:
    none = Credentials()
    assert none.check(None)
    bearer = Credentials(bearer_token="s3cret")
    assert bearer.check("Bearer s3cret")
    assert bearer.check("bearer s3cret")
    assert not bearer.check("Bearer s3cre")
    assert not bearer.check(None)
    assert not bearer.check("Basic " + base64.b64encode(b"a:s3cret").decode())
    basic = Credentials(basic_username="prom", basic_password="pa:ss")
    good = "Basic " + base64.b64encode(b"prom:pa:ss").decode()
    assert basic.check(good)
    assert not basic.check("Basic " + base64.b64encode(b"prom:nope").decode())
    assert not basic.check("Basic !!!")
    assert not basic.check("Basic " + base64.b64encode(b"nocolon").decode())
    assert basic.challenge().startswith("Basic")
    both = Credentials(bearer_token="t", basic_username="u", basic_password="p")
    assert both.check("Bearer t") and both.check("Basic " + base64.b64encode(b"u:p").decode())
    assert "Bearer" in both.challenge() and "Basic" in both.challenge()


def test_credentials_from_files_are_reread(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    settings = SimpleNamespace(
        PROMETHEUS_METRICS_BEARER_TOKEN_FILE=str(token), PROMETHEUS_METRICS_BEARER_TOKEN="ignored"
    )
    assert Credentials.from_settings(settings).check("Bearer first")
    token.write_text("second")
    assert not Credentials.from_settings(settings).check("Bearer first")
    assert Credentials.from_settings(settings).check("Bearer second")


# --- through the real view (Django test client sets REMOTE_ADDR) -----------------------


def test_metrics_allowed_from_loopback(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/metrics")
    assert resp.status_code == 200
    assert b"django_http_requests_total_by_method_total" in resp.content


@pytest.mark.parametrize("remote", ["8.8.8.8", "2001:db8::1"])
def test_metrics_forbidden_elsewhere(client, remote: str) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/metrics", REMOTE_ADDR=remote)
    assert resp.status_code == 403
    assert b"django_" not in resp.content and b"python_" not in resp.content


def test_metrics_ipv6_allowed(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200
    with override_settings(PROMETHEUS_METRICS_ALLOWED_IPS=["2001:db8:42::/48"]):
        assert client.get("/metrics", REMOTE_ADDR="2001:db8:42::9").status_code == 200
        assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


def test_metrics_spoofed_header(client) -> None:  # type: ignore[no-untyped-def]
    spoof = {
        "REMOTE_ADDR": "8.8.8.8",
        "HTTP_X_FORWARDED_FOR": "127.0.0.1",
        "HTTP_X_REAL_IP": "127.0.0.1",
    }
    assert client.get("/metrics", **spoof).status_code == 403
    with override_settings(PROMETHEUS_METRICS_TRUSTED_PROXIES=["10.0.0.5/32"]):
        # header only believed from the trusted proxy
        assert client.get("/metrics", **spoof).status_code == 403
        via_proxy = {"REMOTE_ADDR": "10.0.0.5", "HTTP_X_FORWARDED_FOR": "8.8.8.8"}
        assert client.get("/metrics", **via_proxy).status_code == 403
        via_proxy["HTTP_X_FORWARDED_FOR"] = "192.168.7.7"
        assert client.get("/metrics", **via_proxy).status_code == 200


def test_metrics_through_an_untrusted_proxy_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.9").status_code == 200
    proxied = client.get("/metrics", REMOTE_ADDR="10.2.0.9", HTTP_X_FORWARDED_FOR="10.2.0.1")
    assert proxied.status_code == 403
    assert b"django_" not in proxied.content


def test_metrics_bearer_auth(client) -> None:  # type: ignore[no-untyped-def]
    with override_settings(PROMETHEUS_METRICS_BEARER_TOKEN="tok-123"):
        resp = client.get("/metrics")
        assert resp.status_code == 401
        assert resp["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert b"django_" not in resp.content
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer tok-123").status_code == 200
        # the IP check still applies with valid credentials
        resp = client.get("/metrics", HTTP_AUTHORIZATION="Bearer tok-123", REMOTE_ADDR="8.8.8.8")
        assert resp.status_code == 403


def test_metrics_basic_auth_from_files(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "u").write_text("prometheus\n")
    (tmp_path / "p").write_text("hunter2\n")
    with override_settings(
        PROMETHEUS_METRICS_BASIC_AUTH_USERNAME_FILE=str(tmp_path / "u"),
        PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD_FILE=str(tmp_path / "p"),
    ):
        resp = client.get("/metrics")
        assert resp.status_code == 401
        assert resp["WWW-Authenticate"].startswith('Basic realm="metrics"')
        good = "Basic " + base64.b64encode(b"prometheus:hunter2").decode()
        bad = "Basic " + base64.b64encode(b"prometheus:hunter3").decode()
        assert client.get("/metrics", HTTP_AUTHORIZATION=bad).status_code == 401
        assert client.get("/metrics", HTTP_AUTHORIZATION=good).status_code == 200


def test_unreadable_secret_file_fails_closed(client, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with override_settings(PROMETHEUS_METRICS_BEARER_TOKEN_FILE=str(tmp_path / "missing")):
        resp = client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything")
    assert resp.status_code == 503
    assert b"django_" not in resp.content
