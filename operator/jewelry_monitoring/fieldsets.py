"""The fields our server-side apply of an object owns, as the API server records them
(``metadata.managedFields[].fieldsV1`` of our Apply entry), computed from the object alone.

Why: a child is up to date when its spec-hash annotation is the wanted one and our Apply
entry still owns every field we set. A field another writer changes or removes leaves our
entry (the server moves it to theirs, or drops it), so comparing our entry's digest, which
the child watch carries, with the digest of the wanted object's field set tells "unchanged
since we applied it" without a GET, even after a restart, when the operator has no memory
of what it confirmed (issue 19: a restart that costs nothing).

Pure. The rules are the structured-merge-diff ones for an applied configuration: a scalar,
an empty object, an atomic list or map is one leaf; an object is its fields; an associative
list is its items by key, each with "." and its fields. Which lists are associative (and by
which keys) and which objects are atomic depends on the kind's schema: the tables below
cover the fields our builders set, and tests/operator/test_field_ownership.py compares the
result with the real API server's for every child kind. A field set computed wrongly only
costs a GET (the digests differ), never a wrong "up to date".
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

FIELD_MANAGER = "jewelry-monitoring"
Path = tuple[str, ...]
# "*" stands for an item of a list.
_POD = ("spec", "template", "spec")
_WORKLOAD: dict[Path, tuple[str, ...]] = {
    (*_POD, "containers"): ("name",),
    (*_POD, "initContainers"): ("name",),
    (*_POD, "volumes"): ("name",),
    (*_POD, "imagePullSecrets"): ("name",),
    (*_POD, "topologySpreadConstraints"): ("topologyKey", "whenUnsatisfiable"),
    (*_POD, "containers", "*", "env"): ("name",),
    (*_POD, "containers", "*", "ports"): ("containerPort", "protocol"),
    (*_POD, "containers", "*", "volumeMounts"): ("mountPath",),
}
# Associative lists (x-kubernetes-list-type: map) by kind, with their keys; any other list
# is atomic.
ASSOCIATIVE: dict[str, dict[Path, tuple[str, ...]]] = {
    "Deployment": _WORKLOAD,
    "Service": {("spec", "ports"): ("port", "protocol")},
    "PrometheusRule": {("spec", "groups"): ("name",)},
}
# Whose items are atomic structs: the item is one leaf.
_OWNER_REFERENCES: Path = ("metadata", "ownerReferences")
# Objects that are atomic wherever they appear in our children: label selectors
# (+structType=atomic; prometheus-operator's x-kubernetes-map-type: atomic), key references
# of env (+structType=atomic) and a pod's nodeSelector (+mapType=atomic). A Service's
# spec.selector is an atomic map too.
ATOMIC_FIELDS = frozenset(
    {
        "selector",
        "podSelector",
        "secretKeyRef",
        "configMapKeyRef",
        "fieldRef",
        "resourceFieldRef",
        "nodeSelector",
    }
)
# A key field the server defaults when it is missing (a port's protocol).
_KEY_DEFAULTS = {"protocol": "TCP"}
# Set by the server, never part of an applied configuration's field set.
_SYSTEM_METADATA = frozenset(
    {
        "name",
        "namespace",
        "generateName",
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "managedFields",
        "selfLink",
    }
)


def applied_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The fieldsV1 that a server-side apply of ``obj`` gives its manager."""
    associative = {_OWNER_REFERENCES: ("uid",), **ASSOCIATIVE.get(obj["kind"], {})}

    def fields(value: dict[str, Any], path: Path) -> dict[str, Any]:
        owned: dict[str, Any] = {}
        for key, child in value.items():
            if not path and key in ("apiVersion", "kind", "status"):
                continue
            if path == ("metadata",) and key in _SYSTEM_METADATA:
                continue
            owned[f"f:{key}"] = node(child, (*path, key))
        return owned

    def node(value: Any, path: Path) -> dict[str, Any]:
        if path[-1] in ATOMIC_FIELDS:
            return {}
        if isinstance(value, dict):
            return fields(value, path) if value else {}
        if isinstance(value, list):
            keys = _keys(associative, path)
            if keys is None:
                return {}
            items: dict[str, Any] = {}
            for item in value:
                key = {name: item.get(name, _KEY_DEFAULTS.get(name)) for name in keys}
                element = "k:" + json.dumps(key, separators=(",", ":"), sort_keys=True)
                atomic = path == _OWNER_REFERENCES
                items[element] = {} if atomic else {".": {}, **fields(item, (*path, "*"))}
            return items
        return {}

    return fields(obj, ())


def _keys(associative: dict[Path, tuple[str, ...]], path: Path) -> tuple[str, ...] | None:
    for pattern, keys in associative.items():
        if len(pattern) != len(path):
            continue
        if all(p in ("*", q) for p, q in zip(pattern, path, strict=True)):
            return keys
    return None


def digest(fields: dict[str, Any]) -> str:
    """A short fingerprint of a field set: equal sets, equal digests."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def our_applied_digest(obj: dict[str, Any]) -> str | None:
    """The digest of the fields our Apply entry of ``obj`` owns (None: no such entry)."""
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if (
            entry.get("manager") == FIELD_MANAGER
            and entry.get("operation") == "Apply"
            and not entry.get("subresource")
        ):
            return digest(entry.get("fieldsV1") or {})
    return None
