"""What Kubernetes and Prometheus accept as names, label maps and addresses, checked up front.

A value the CRD's schema lets through but the API server (or Prometheus) refuses in a child
would otherwise surface as a failed apply retried forever, or as rules Prometheus never
loads. Each check returns messages that begin with the spec field they are about. The
patterns are those of Kubernetes' apimachinery validation and Prometheus' model package.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

# apimachinery: IsDNS1123Subdomain, IsQualifiedName, IsValidLabelValue, IsDNS1123Label.
DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS_SUBDOMAIN = rf"{DNS_LABEL}(\.{DNS_LABEL})*"
_DNS_SUBDOMAIN = re.compile(DNS_SUBDOMAIN)
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# A container port name (IANA service name): 1-15 characters, a letter among them.
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
# Prometheus' legacy names: what both Prometheus 2 and 3 accept by default.
PROMETHEUS_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# The API server refuses an object whose annotations total more (TotalAnnotationSizeLimitB);
# the operator adds a few of its own (spec hash, folder, egress note), hence the reserve.
ANNOTATIONS_LIMIT = 256 * 1024
OWN_ANNOTATIONS_RESERVE = 4 * 1024
MAX_NAME = 63
MAX_SUBDOMAIN = 253


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a label or annotation key (``[prefix/]name``), or None."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (len(prefix) <= MAX_SUBDOMAIN and _DNS_SUBDOMAIN.fullmatch(prefix)):
        return f"key {key!r}: its prefix must be a lower-case DNS subdomain"
    if not (len(name) <= MAX_NAME and _NAME_PART.fullmatch(name)):
        return (
            f"key {key!r}: the name must be 1-63 letters, digits, '-', '_' or '.', "
            "beginning and ending with a letter or digit"
        )
    return None


def label_map_problems(where: str, labels: Mapping[str, str]) -> list[str]:
    """Keys and values of a label map that the API server would refuse."""
    problems = []
    for key, value in labels.items():
        key_problem = qualified_name_problem(key)
        if key_problem:
            problems.append(f"{where}: {key_problem}")
        if not (len(value) <= MAX_NAME and _LABEL_VALUE.fullmatch(value)):
            problems.append(
                f"{where}: value {value[:80]!r} of {key!r} is not a label value (at most 63 "
                "letters, digits, '-', '_' or '.', beginning and ending with a letter or digit)"
            )
    return problems


def annotation_problems(
    where: str, annotations: Mapping[str, str], beside: Mapping[str, str] | None = None
) -> list[str]:
    """Annotation keys the server would refuse, and a total size over its limit together
    with the annotations ``beside`` them on the same objects."""
    problems = [
        f"{where}: {problem}"
        for problem in map(qualified_name_problem, annotations)
        if problem is not None
    ]
    limit = ANNOTATIONS_LIMIT - OWN_ANNOTATIONS_RESERVE
    size = _size({**(beside or {}), **annotations})
    if size > limit and _size(beside or {}) <= limit:  # else it is the others' problem
        problems.append(
            f"{where}: {size} bytes of annotations; objects may carry at most {limit} (the "
            "server's 256 KiB, less what the operator adds)"
        )
    return problems


def _size(annotations: Mapping[str, str]) -> int:
    return sum(len(key.encode()) + len(value.encode()) for key, value in annotations.items())


def prometheus_label_problems(where: str, labels: Mapping[str, str]) -> list[str]:
    """Rule label names Prometheus would refuse to load."""
    return [
        f"{where}: {key!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not __*)"
        for key in labels
        if not PROMETHEUS_LABEL.fullmatch(key) or key.startswith("__")
    ]


def port_problem(where: str, port: int | str) -> str | None:
    """Why ``port`` is neither a port number nor a container port name, or None."""
    if isinstance(port, int):
        return None if 1 <= port <= 65535 else f"{where}: {port} is not a port (1-65535)"
    if (
        len(port) <= 15
        and _PORT_NAME.fullmatch(port)
        and "--" not in port
        and re.search("[a-z]", port)
    ):
        return None
    return (
        f"{where}: {port!r} is not a port name (1-15 lower-case letters, digits and single "
        "'-', with a letter)"
    )


def cidr_problem(where: str, cidr: str) -> str | None:
    """Why ``cidr`` is not an address range as the API server writes one, or None."""
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        return f"{where}: {cidr!r} is not an address range such as 10.0.0.0/8"
    if str(network) != cidr:
        return f"{where}: write {cidr!r} as {str(network)!r}"
    return None


def url_host_port(url: str, default_ports: Mapping[str, int]) -> tuple[str, int] | str:
    """(host, port) an exporter connects to, from a URL or ``host:port`` whose scheme (the
    first in ``default_ports`` if missing) must be one of ``default_ports``; or why not."""
    first = next(iter(default_ports))
    parts = urlsplit(url if "://" in url else f"{first}://{url}")
    if parts.scheme not in default_ports:
        return f"scheme {parts.scheme!r} is not one of {sorted(default_ports)}"
    try:
        port = parts.port
    except ValueError:
        return "the port is not a number from 1 to 65535"
    if not parts.hostname:
        return "it names no host"
    return parts.hostname, port or default_ports[parts.scheme]
