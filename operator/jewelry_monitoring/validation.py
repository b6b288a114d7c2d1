"""What Kubernetes and Prometheus accept as names, label maps and addresses, checked up front.

A value the CRD's schema lets through but the API server (or Prometheus) refuses in a child
would otherwise surface as a failed apply retried forever, or as rules Prometheus never
loads. Each check returns messages that begin with the spec field they are about. The
patterns are those of Kubernetes' apimachinery validation and Prometheus' model package.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import types
import typing
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

from pydantic import BaseModel
from pydantic.fields import FieldInfo

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


def annotation_problems(where: str, annotations: Mapping[str, str]) -> list[str]:
    """Annotation keys the server would refuse."""
    return [
        f"{where}: {problem}"
        for problem in map(qualified_name_problem, annotations)
        if problem is not None
    ]


def annotations_size_problem(
    where: str, annotations: Mapping[str, str], beside: Mapping[str, str]
) -> str | None:
    """A total size over the server's limit of ``annotations`` together with the annotations
    ``beside`` them on the same objects, or None."""
    limit = ANNOTATIONS_LIMIT - OWN_ANNOTATIONS_RESERVE
    size = _size({**beside, **annotations})
    if size > limit and _size(beside) <= limit:  # else it is the others' problem
        return (
            f"{where}: {size} bytes of annotations; objects may carry at most {limit} (the "
            "server's 256 KiB, less what the operator adds)"
        )
    return None


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
    try:
        parts = urlsplit(url if "://" in url else f"{first}://{url}")
    except ValueError as error:  # an unclosed "[" of an IPv6 address, for one
        return f"it is not a URL ({error})"
    if parts.scheme not in default_ports:
        return f"scheme {parts.scheme!r} is not one of {sorted(default_ports)}"
    try:
        port = parts.port
    except ValueError:
        return "the port is not a number from 1 to 65535"
    if not parts.hostname:
        return "it names no host"
    return parts.hostname, port or default_ports[parts.scheme]


class MapKind(enum.Enum):
    """What a string-to-string map of the spec holds, which decides how it is checked.

    Every such field of the model is annotated with its kind (``Annotated[dict[str, str],
    MapKind.X]``) and ``string_maps`` finds them all by walking the model, so that a new
    field is checked as its kind says without anyone having to remember it.
    """

    OBJECT_LABELS = "Kubernetes labels on the operator's own objects"
    SELECTOR = "Kubernetes labels selecting pods, nodes or namespaces of others"
    ANNOTATIONS = "Kubernetes annotations on the operator's own objects"
    ALERT_LABELS = "labels of the rules the operator writes"
    RULE_ANNOTATIONS = "annotations of alerting rules"
    QUANTITIES = "container resource quantities by resource name"


def map_kind(field: FieldInfo) -> MapKind | None:
    """The kind a field of a model is annotated with, in its metadata or under Optional."""

    def find(metadata: typing.Iterable[object]) -> MapKind | None:
        return next((item for item in metadata if isinstance(item, MapKind)), None)

    found = find(field.metadata)
    if found is None and typing.get_origin(field.annotation) in (typing.Union, types.UnionType):
        for option in typing.get_args(field.annotation):  # ``X | None``
            if typing.get_origin(option) is typing.Annotated:
                found = found or find(option.__metadata__)
    return found


def string_maps(model: BaseModel, path: str = "") -> Iterator[tuple[str, MapKind, dict[str, str]]]:
    """Every annotated string map set in ``model`` and the models within it: (its path in the
    spec as a user writes it, its kind, the map)."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        where = f"{path}.{field.alias or name}".lstrip(".")
        kind = map_kind(field)
        if kind is not None:
            if value is not None:
                yield where, kind, value
        elif isinstance(value, BaseModel):
            yield from string_maps(value, where)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from string_maps(item, f"{where}[{index}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, BaseModel):
                    yield from string_maps(item, f"{where}.{key}")
