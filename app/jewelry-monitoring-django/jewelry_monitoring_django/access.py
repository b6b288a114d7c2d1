"""Who may read ``/metrics`` (django-prometheus has no access control).

Two independent checks, in this order:

1. **Source address** must be inside ``PROMETHEUS_METRICS_ALLOWED_IPS`` (CIDRs, IPv4 and
   IPv6; default :data:`DEFAULT_ALLOWED_IPS`: loopback and the private and shared ranges pod
   networks use) -> otherwise 403 and no metric data. The client address is ``REMOTE_ADDR``.

   Prometheus scrapes pods directly, never through a proxy. A request carrying any of
   :data:`PROXY_HEADERS` therefore went through a proxy (an Ingress controller, whose own
   pod address is private too) and is refused unless its direct peer is inside
   ``PROMETHEUS_METRICS_TRUSTED_PROXIES`` (default: none). From a trusted proxy, the
   ``PROMETHEUS_METRICS_CLIENT_IP_HEADER`` (``X-Forwarded-For`` by default, or
   ``Forwarded``) is walked right-to-left, skipping trusted proxies; the first untrusted hop
   is the client. A chain with garbage in it, or a proxied request without that header,
   is refused: the client cannot be known.
2. **Credentials**, if configured: bearer token (``PROMETHEUS_METRICS_BEARER_TOKEN``)
   and/or basic auth (``PROMETHEUS_METRICS_BASIC_AUTH_USERNAME`` +
   ``PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD``). Each may instead name a file
   (``..._FILE``, a mounted Secret), which wins and is re-read per request so a rotated
   secret applies without a restart. Either configured scheme is accepted; comparison is
   constant-time; failures get 401 with ``WWW-Authenticate``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_IPS = "PROMETHEUS_METRICS_ALLOWED_IPS"
TRUSTED_PROXIES = "PROMETHEUS_METRICS_TRUSTED_PROXIES"
CLIENT_IP_HEADER = "PROMETHEUS_METRICS_CLIENT_IP_HEADER"
BEARER_TOKEN = "PROMETHEUS_METRICS_BEARER_TOKEN"
BASIC_AUTH_USERNAME = "PROMETHEUS_METRICS_BASIC_AUTH_USERNAME"
BASIC_AUTH_PASSWORD = "PROMETHEUS_METRICS_BASIC_AUTH_PASSWORD"
SECRET_SETTINGS = (BEARER_TOKEN, BASIC_AUTH_USERNAME, BASIC_AUTH_PASSWORD)

# Where Prometheus and the kubelet reach a pod from: loopback, RFC 1918, the RFC 6598 shared
# space (EKS custom networking and other CNIs give pods 100.64.0.0/10) and IPv6 ULA. IPv6
# clusters with global pod addresses need their pod CIDR set, or a bearer token (README).
DEFAULT_ALLOWED_IPS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)
DEFAULT_CLIENT_IP_HEADER = "X-Forwarded-For"
# Headers a proxy adds to name the client it forwards for: their presence means "proxied".
PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")


def meta_key(header: str) -> str:
    """The ``request.META`` key of an HTTP header name."""
    return "HTTP_" + header.upper().replace("-", "_")


def network_list(settings: Any, name: str, default: Iterable[str] = ()) -> list[str]:
    """The CIDR list setting ``name``; a bare string is refused (it would iterate chars)."""
    value = getattr(settings, name, None)
    if value is None:
        return list(default)
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name} must be a list of CIDR strings, not {value!r}")
    return list(value)


def parse_networks(values: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDRs (bare addresses become /32 or /128). Invalid entries raise ValueError."""
    return tuple(ipaddress.ip_network(v.strip(), strict=False) for v in values if v.strip())


def parse_ip(value: str | None) -> IPAddress | None:
    """Parse one address; accepts ``[v6]``, ``v4:port`` forms and IPv4-mapped IPv6."""
    if not value:
        return None
    value = value.strip().strip('"')
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


def forwarded_for(header_value: str) -> list[str]:
    """The ``for=`` node of each element of an RFC 7239 ``Forwarded`` header, in order
    (an element without one yields ``""``, which parses as no address)."""
    nodes = []
    for element in header_value.split(","):
        node = ""
        for pair in element.split(";"):
            key, _, value = pair.strip().partition("=")
            if key.lower() == "for":
                node = value.strip()
        nodes.append(node)
    return nodes


def _in(ip: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


@dataclass(frozen=True)
class AccessPolicy:
    allowed: tuple[IPNetwork, ...]
    trusted_proxies: tuple[IPNetwork, ...] = ()
    client_ip_header: str = DEFAULT_CLIENT_IP_HEADER

    @classmethod
    def from_settings(cls, settings: Any) -> AccessPolicy:
        return cls(
            allowed=parse_networks(network_list(settings, ALLOWED_IPS, DEFAULT_ALLOWED_IPS)),
            trusted_proxies=parse_networks(network_list(settings, TRUSTED_PROXIES)),
            client_ip_header=getattr(settings, CLIENT_IP_HEADER, "") or DEFAULT_CLIENT_IP_HEADER,
        )

    def _hops(self, meta: Mapping[str, str]) -> list[str] | None:
        """The client chain from the configured header, left (origin) to right; None if
        the header is absent."""
        raw = meta.get(meta_key(self.client_ip_header))
        if raw is None:
            return None
        if self.client_ip_header.lower() == "forwarded":
            return forwarded_for(raw)
        return [hop.strip() for hop in raw.split(",")]

    def client_ip(self, meta: Mapping[str, str]) -> IPAddress | None:
        """The address to authorize, per the rules in the module docstring (None: refuse)."""
        peer = parse_ip(meta.get("REMOTE_ADDR"))
        if peer is None:
            return None
        proxied = any(meta_key(header) in meta for header in PROXY_HEADERS)
        if not _in(peer, self.trusted_proxies):
            return None if proxied else peer
        hops = self._hops(meta)
        if hops is None:
            return None if proxied else peer
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


def read_secret(settings: Any, name: str) -> str | None:
    """Setting ``name`` or, if ``name + "_FILE"`` is set, the stripped content of that file
    (read on every call, so a rotated Kubernetes Secret applies without a restart)."""
    path = getattr(settings, f"{name}_FILE", None)
    if path:
        return Path(path).read_text().strip() or None
    value = getattr(settings, name, None)
    return str(value) if value else None


@dataclass(frozen=True)
class Credentials:
    bearer_token: str | None = None
    basic_username: str | None = None
    basic_password: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> Credentials:
        """Raises OSError when a ``..._FILE`` cannot be read."""
        return cls(
            bearer_token=read_secret(settings, BEARER_TOKEN),
            basic_username=read_secret(settings, BASIC_AUTH_USERNAME),
            basic_password=read_secret(settings, BASIC_AUTH_PASSWORD),
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
