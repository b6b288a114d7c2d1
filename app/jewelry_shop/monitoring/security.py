"""Access control for ``/metrics`` (django-prometheus has none).

Two independent checks, in this order:

1. **Source address** must be inside ``PROMETHEUS_METRICS_ALLOWED_IPS`` (CIDRs, IPv4 and
   IPv6) -> otherwise 403 and no metric data. The client address is ``REMOTE_ADDR``.
   Only if ``METRICS_CLIENT_IP_HEADER`` (e.g. ``X-Forwarded-For``) is set *and* the direct
   peer is inside ``METRICS_TRUSTED_PROXIES`` is the header consulted: it is walked
   right-to-left, skipping trusted proxies; the first untrusted hop is the client. A
   header from an untrusted peer is ignored, so it cannot be spoofed from outside.
2. **Credentials**, if configured: bearer token (``METRICS_BEARER_TOKEN[_FILE]``) and/or
   basic auth (``METRICS_BASIC_AUTH_USERNAME[_FILE]`` + ``METRICS_BASIC_AUTH_PASSWORD[_FILE]``).
   Either configured scheme is accepted; comparison is constant-time; failures get 401 with
   ``WWW-Authenticate``. Secrets are re-read per request, so mounted secret rotation works.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDRs (bare addresses become /32 or /128). Invalid entries raise ValueError."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def parse_ip(value: str | None) -> IPAddress | None:
    """Parse one address; accepts ``[v6]``, ``v4:port`` forms and IPv4-mapped IPv6."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("["):  # [2001:db8::1] or [2001:db8::1]:443
        value = value[1 : value.find("]")] if "]" in value else value[1:]
    elif value.count(":") == 1:  # 203.0.113.7:54321
        value = value.split(":", 1)[0]
    value = value.split("%", 1)[0]  # zone id
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _in(ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


@dataclass(frozen=True)
class AccessPolicy:
    allowed: tuple[IPNetwork, ...]
    trusted_proxies: tuple[IPNetwork, ...] = ()
    client_ip_header: str = ""  # HTTP header name, e.g. "X-Forwarded-For"

    @classmethod
    def from_settings(cls, settings: Any) -> AccessPolicy:
        return cls(
            allowed=parse_networks(settings.PROMETHEUS_METRICS_ALLOWED_IPS),
            trusted_proxies=parse_networks(getattr(settings, "METRICS_TRUSTED_PROXIES", [])),
            client_ip_header=getattr(settings, "METRICS_CLIENT_IP_HEADER", "") or "",
        )

    @property
    def meta_key(self) -> str:
        return "HTTP_" + self.client_ip_header.upper().replace("-", "_")

    def client_ip(self, meta: Mapping[str, str]) -> IPAddress | None:
        """The address to authorize, per the rules in the module docstring (None = unknown)."""
        peer = parse_ip(meta.get("REMOTE_ADDR"))
        if peer is None:
            return None
        if not (self.client_ip_header and self.trusted_proxies):
            return peer
        if not _in(peer, self.trusted_proxies):
            return peer  # header from an untrusted peer: ignored
        raw = meta.get(self.meta_key, "")
        hops = [h for h in (x.strip() for x in raw.split(",")) if h]
        client = peer
        for hop in reversed(hops):
            ip = parse_ip(hop)
            if ip is None:
                return None  # garbage in the chain: refuse to guess
            client = ip
            if not _in(ip, self.trusted_proxies):
                return ip
        return client  # every hop trusted: the left-most one is the origin

    def ip_allowed(self, meta: Mapping[str, str]) -> bool:
        ip = self.client_ip(meta)
        return ip is not None and _in(ip, self.allowed)


@dataclass(frozen=True)
class Credentials:
    bearer_token: str | None = None
    basic_username: str | None = None
    basic_password: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Credentials:
        from jewelry_shop.env import read_secret

        return cls(
            bearer_token=read_secret("METRICS_BEARER_TOKEN", environ),
            basic_username=read_secret("METRICS_BASIC_AUTH_USERNAME", environ),
            basic_password=read_secret("METRICS_BASIC_AUTH_PASSWORD", environ),
        )

    @property
    def basic_enabled(self) -> bool:
        return bool(self.basic_username and self.basic_password)

    @property
    def required(self) -> bool:
        return bool(self.bearer_token) or self.basic_enabled

    def challenge(self) -> str:
        schemes = []
        if self.bearer_token:
            schemes.append('Bearer realm="metrics"')
        if self.basic_enabled:
            schemes.append('Basic realm="metrics", charset="UTF-8"')
        return ", ".join(schemes)

    def check(self, authorization: str | None) -> bool:
        """True if no credentials are configured or the Authorization header matches."""
        if not self.required:
            return True
        if not authorization or " " not in authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        scheme = scheme.lower()
        if scheme == "bearer" and self.bearer_token:
            return hmac.compare_digest(value.encode(), self.bearer_token.encode())
        if scheme == "basic" and self.basic_enabled:
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, sep, password = decoded.partition(":")
            if not sep:
                return False
            assert self.basic_username is not None and self.basic_password is not None
            # Evaluate both comparisons (no short-circuit) to keep timing uniform.
            ok_user = hmac.compare_digest(user.encode(), self.basic_username.encode())
            ok_pass = hmac.compare_digest(password.encode(), self.basic_password.encode())
            return ok_user & ok_pass
        return False
