"""The JewelryMonitoring resources and their Services' endpoints as the watches last
delivered them, so that a reconcile reads neither (issue 19: a restart with everything up
to date costs no request per resource, where a GET of the resource and a LIST of its
EndpointSlices took two).

- Resources come from kopf's watch (its event handler stores each body); kept compressed
  (a full spec is ~10 KB of JSON, ~1.5 KB deflated). A status the operator just wrote is
  stored too, unless the watch already delivered a newer version: a reconcile that follows
  at once then compares with what it wrote, not with the version before it.
- EndpointSlices come from our label-selected watch of our Services' slices (only their
  Service name, ports and addresses are kept). Until that watch has listed once, absence
  means nothing and the reconcile lists them itself.

Pure and thread-safe: watches write from their threads, reconciles read from theirs.
"""

from __future__ import annotations

import json
import threading
import zlib
from typing import Any

from jewelry_monitoring.builders.common import OWNER_LABEL
from jewelry_monitoring.targets import SERVICE_NAME_LABEL

Obj = dict[str, Any]
Key = tuple[str, str]


def _version(obj: Obj) -> int | None:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


class Resources:
    """The latest known body of each resource, by (namespace, name)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: dict[Key, tuple[int | None, bytes]] = {}

    def get(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            stored = self._bodies.get((namespace, name))
        if stored is None:
            return None
        body: Obj = json.loads(zlib.decompress(stored[1]))
        return body

    def delivered(self, event_type: str | None, body: Obj) -> None:
        """A watch event (kopf's type: None while listing, else ADDED/MODIFIED/DELETED)."""
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            if event_type == "DELETED":
                self._bodies.pop(key, None)
            else:
                self._bodies[key] = (_version(body), zlib.compress(json.dumps(body).encode(), 1))

    def written(self, body: Obj) -> None:
        """The resource as a write of ours returned it: kept unless the watch already
        delivered a newer version, or the resource is gone."""
        meta = body["metadata"]
        key, version = (meta["namespace"], meta["name"]), _version(body)
        with self._lock:
            known = self._bodies.get(key)
            if known is None or version is None or (known[0] or 0) >= version:
                return
            self._bodies[key] = (version, zlib.compress(json.dumps(body).encode(), 1))


class Endpoints:
    """The EndpointSlices of our Services, reduced to what the checks read (Service name,
    port names and numbers, one address per endpoint), by (namespace, owner label)."""

    def __init__(self, parts: list[str]) -> None:
        """``parts`` names every watch that feeds it (one per watched namespace)."""
        self._lock = threading.Lock()
        # (namespace, owner label) -> slice name -> the slice reduced
        self._slices: dict[Key, dict[str, Reduced]] = {}
        self._owner_of: dict[Key, str] = {}  # (namespace, slice name) -> owner label
        self.synced = {part: threading.Event() for part in parts}

    def complete(self) -> bool:
        return all(event.is_set() for event in self.synced.values())

    def of_owner(self, namespace: str, owner: str) -> list[Obj] | None:
        """The slices of the resource's Services in the shape targets.py reads, or None
        while the watches have not listed: then only a LIST can tell."""
        if not self.complete():
            return None
        with self._lock:
            known = list(self._slices.get((namespace, owner), {}).values())
        return [
            {
                "metadata": {"labels": {SERVICE_NAME_LABEL: service}},
                "ports": [{"name": name, "port": port} for name, port in ports],
                "endpoints": [{"addresses": [address]} for address in addresses],
            }
            for service, ports, addresses in known
        ]

    def listed(self, part: str, namespace: str, slices: list[Obj]) -> set[Key]:
        """All slices of one watch (``namespace``, or every one if ""); returns the
        (namespace, owner label) of the resources whose endpoints changed."""
        fresh: dict[Key, dict[str, Reduced]] = {}
        with self._lock:
            for obj in slices:
                owner, name, reduced = _reduced(obj)
                fresh.setdefault(owner, {})[name] = reduced
            stale = [key for key in self._slices if not namespace or key[0] == namespace]
            changed = {key for key in stale if key not in fresh}
            changed |= {key for key, by_name in fresh.items() if self._slices.get(key) != by_name}
            for key in stale:
                del self._slices[key]
            self._slices.update(fresh)
            self._owner_of = {
                key: owner
                for key, owner in self._owner_of.items()
                if namespace and key[0] != namespace
            }
            self._owner_of.update(
                {(key[0], name): key[1] for key, by_name in fresh.items() for name in by_name}
            )
        self.synced[part].set()
        return {key for key in changed if key[1]}

    def event(self, event_type: str, obj: Obj) -> set[Key]:
        owner, name, reduced = _reduced(obj)
        where = (owner[0], name)
        changed: set[Key] = set()
        with self._lock:
            before = self._owner_of.pop(where, None)
            if before is not None and before != owner[1]:  # relabelled: leaves its old owner
                self._drop((owner[0], before), name)
                changed.add((owner[0], before))
            if event_type == "DELETED":
                if self._drop(owner, name):
                    changed.add(owner)
            else:
                self._owner_of[where] = owner[1]
                by_name = self._slices.setdefault(owner, {})
                if by_name.get(name) != reduced:
                    by_name[name] = reduced
                    changed.add(owner)
        return {key for key in changed if key[1]}

    def _drop(self, owner: Key, name: str) -> bool:
        by_name = self._slices.get(owner, {})
        dropped = by_name.pop(name, None) is not None
        if not by_name:
            self._slices.pop(owner, None)
        return dropped


# (Service name, ((port name, number), ...), (address, ...))
Reduced = tuple[str, tuple[tuple[str, int | None], ...], tuple[str, ...]]


def _reduced(obj: Obj) -> tuple[Key, str, Reduced]:
    """((namespace, owner label), slice name, the slice reduced)."""
    meta = obj["metadata"]
    labels = meta.get("labels") or {}
    addresses = tuple(
        sorted(
            address
            for endpoint in obj.get("endpoints") or []
            for address in (endpoint.get("addresses") or [])[:1]
        )
    )
    ports = tuple(sorted((str(p.get("name") or ""), p.get("port")) for p in obj.get("ports") or []))
    service = str(labels.get(SERVICE_NAME_LABEL, ""))
    owner = (meta["namespace"], str(labels.get(OWNER_LABEL, "")))
    return owner, meta["name"], (service, ports, addresses)
