"""Our children as their label-selected watches last reported them, for reconciles to read.

Every reconcile used to LIST each child kind in its namespace (7 requests, whatever changed)
and compare what came back with what it wants. Here the watches that already bring our
children (and only ours: they carry the managed-by and owner labels as a server-side
selector) keep a compact record of each one: what a reconcile decides on without the full
object (owner, spec hash, resourceVersion, and for Deployments the replica
counts). Whether the object's fields still match what we want is not kept: a reconcile
marks the version at which it found (or made) a child up to date (its resourceVersion; the
generation and metadata for kinds whose status changes all the time), and trusts the
record only while the watch still reports that version; any other change (a hand
edit, a controller's status update, a change the watch has not shown yet) costs one GET
and a full comparison, never a wrong "up to date".

What the watch reported is never replaced by a reconcile's copy: resourceVersions are
opaque (equal or not, never older or newer), so a copy that differs from the watch's may be
older (a hand edit came in between) as well as newer. Only a child the watch has not
reported at all (just created) is recorded from the reconcile's copy, unless the watch
reported it deleted meanwhile.

Pure and thread-safe: the watches write from their threads, reconciles read from theirs.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from jewelry_monitoring.builders.common import OWNER_LABEL, SPEC_HASH_ANNOTATION
from jewelry_monitoring.fieldsets import FIELD_MANAGER, our_applied_digest

Obj = dict[str, Any]
# (kind, namespace, name) of a child.
ChildKey = tuple[str, str, str]
# (namespace, owner label) of the resource that owns children.
Key = tuple[str, str]
# Kinds whose status others update all the time (the Deployment controller): for them the
# version that matters is the spec's (generation) and metadata's, so a status update does
# not cost a GET to compare fields we never set in status.
_STATUS_CHURN = frozenset({"Deployment"})
# Annotations their controllers write on them (never we): one changing is no edit of ours.
_CONTROLLER_ANNOTATIONS = ("deployment.kubernetes.io/",)
# The replica count ExportersAvailable reads, of Deployments.
_STATUS_COUNTS = ("availableReplicas",)
# How long a deletion the watch reported is remembered, so that a reconcile that read or
# wrote the object just before cannot bring it back into the cache: far longer than a
# request takes to be answered and marked.
DELETIONS_KEPT_SECONDS = 300.0


def watched_whole(kind: str) -> bool:
    """Whether the watch of ``kind`` must bring whole objects: only for the replica counts
    of Deployments. Every other kind is watched as PartialObjectMetadata,
    which holds all the cache reads of it (versions, labels, annotations, owners, managed
    fields): a PrometheusRule is ~35 KB of JSON and a dashboard ConfigMap ~19 KB, and a
    restarted operator listing them whole went past its memory limit (issue 19)."""
    return kind in _STATUS_CHURN


def _replica_fields(obj: Obj) -> dict[str, Obj]:
    """The spec and status fields a reconcile reads of a child: its replica counts."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    return {
        "spec": {"replicas": spec["replicas"]} if "replicas" in spec else {},
        "status": {key: status[key] for key in _STATUS_COUNTS if key in status},
    }


def status_view(obj: Obj) -> Obj:
    """What a reconcile's status reads of a child it wrote or read (names, owners, replica
    counts), in the shape of ``Child.as_object``; without the digests ``Child.of`` computes,
    which the reconcile has no use for here."""
    meta = obj["metadata"]
    return {
        "kind": obj["kind"],
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
            "ownerReferences": [
                {"uid": r.get("uid", "")} for r in meta.get("ownerReferences") or []
            ],
        },
        **_replica_fields(obj),
    }


def content_version(obj: Obj) -> str:
    """What changes whenever a field we set may have changed: the resourceVersion, or for
    kinds with a busy status the generation (bumped by every spec change) and the metadata
    we set (labels, annotations, owners; not bumped by generation)."""
    meta = obj["metadata"]
    if obj["kind"] not in _STATUS_CHURN:
        return str(meta.get("resourceVersion", ""))
    annotations = {
        key: value
        for key, value in (meta.get("annotations") or {}).items()
        if not key.startswith(_CONTROLLER_ANNOTATIONS)
    }
    ours = [meta.get("labels"), annotations, meta.get("ownerReferences")]
    digest = hashlib.sha256(json.dumps(ours, sort_keys=True).encode()).hexdigest()[:16]
    return f"{meta.get('generation', 0)}/{digest}"


def reduced(obj: Obj) -> Obj:
    """What ``Child.of`` reads of a child, nothing else: for the watch's lists, which keep
    every listed object until the last page (whole objects are ~10 KB each, with their
    managed fields)."""
    meta = obj["metadata"]
    kept_meta = {
        key: meta[key]
        for key in (
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "labels",
            "annotations",
            "ownerReferences",
        )
        if key in meta
    }
    kept_meta["managedFields"] = [
        entry for entry in meta.get("managedFields") or [] if entry.get("manager") == FIELD_MANAGER
    ]
    return {
        **({"kind": obj["kind"]} if "kind" in obj else {}),
        "metadata": kept_meta,
        **_replica_fields(obj),
    }


@dataclass(frozen=True, slots=True)
class Child:
    """One child, reduced to what a reconcile decides on (a few hundred bytes, not the
    object's tens of KB: 23 children per resource, hundreds of resources)."""

    kind: str
    namespace: str
    name: str
    uid: str
    version: str  # content_version
    owner_label: str
    owner_uids: tuple[str, ...]  # sorted; interned, as the other shared strings
    spec_hash: str | None
    replicas: int | None = None
    counts: tuple[tuple[str, int], ...] = ()
    # Digest of the fields our Apply entry owns (fieldsets.py): unchanged since our apply
    # when it equals the wanted object's, even across a restart.
    applied: str | None = None

    @classmethod
    def of(cls, obj: Obj) -> Child:
        meta = obj["metadata"]
        status = obj.get("status") or {}
        spec_hash = (meta.get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
        owners = {r.get("uid", "") for r in meta.get("ownerReferences") or []}
        # The strings its siblings share (kind, namespace, owner) and the spec hash (kept
        # again by ``_up_to_date``) are interned: one copy each, not one per child (the
        # cache holds 24,000 children at 1,000 resources: issue 19's memory goal).
        return cls(
            kind=sys.intern(obj["kind"]),
            namespace=sys.intern(meta.get("namespace", "")),
            name=meta["name"],
            uid=meta.get("uid", ""),
            version=content_version(obj),
            owner_label=sys.intern((meta.get("labels") or {}).get(OWNER_LABEL, "")),
            owner_uids=tuple(sys.intern(uid) for uid in sorted(owners)),
            spec_hash=sys.intern(spec_hash) if spec_hash else None,
            replicas=(obj.get("spec") or {}).get("replicas"),
            counts=tuple((k, int(status[k])) for k in _STATUS_COUNTS if k in status),
            applied=our_applied_digest(obj),
        )

    def as_object(self) -> Obj:
        """The fields of the object that reconciles read (names, owners, replica counts)."""
        spec = {} if self.replicas is None else {"replicas": self.replicas}
        return {
            "kind": self.kind,
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
                "ownerReferences": [{"uid": uid} for uid in self.owner_uids],
            },
            "spec": spec,
            "status": dict(self.counts),
        }


class ChildCache:
    """Every child our watches have listed, by owner, and the resourceVersions at which a
    reconcile found them up to date."""

    def __init__(self, parts: list[str]) -> None:
        """``parts`` names every watch that feeds the cache (one per kind and namespace):
        the cache is complete once each has listed."""
        self._lock = threading.Lock()
        self._children: dict[ChildKey, Child] = {}
        # (namespace, owner label) -> keys of its children, so a reconcile reads only its own.
        self._by_owner: dict[tuple[str, str], set[ChildKey]] = {}
        # ChildKey -> the child as a reconcile found it up to date, with the spec hash.
        self._up_to_date: dict[ChildKey, tuple[Child, str]] = {}
        # ChildKey -> (uid, monotonic time) of the objects the watches reported deleted
        # lately, oldest first.
        self._deleted: OrderedDict[ChildKey, tuple[str, float]] = OrderedDict()
        self.synced = {part: threading.Event() for part in parts}

    # -- reads, for reconciles --------------------------------------------------------------

    def complete(self) -> bool:
        """Whether every watch has listed: until then absence in the cache means nothing."""
        return all(event.is_set() for event in self.synced.values())

    def owned_by(self, namespace: str, owner_label: str) -> dict[tuple[str, str], Child]:
        """The children labelled as this owner's, by (kind, name)."""
        with self._lock:
            keys = self._by_owner.get((namespace, owner_label), set())
            return {(k[0], k[2]): self._children[k] for k in keys}

    def known_up_to_date(self, child: Child, spec_hash: str) -> bool:
        """Whether a reconcile found ``child`` up to date with ``spec_hash`` at the very
        version the watch last reported."""
        key = (child.kind, child.namespace, child.name)
        with self._lock:
            marked = self._up_to_date.get(key)
        return (
            marked is not None
            and marked[1] == spec_hash
            and (marked[0].uid, marked[0].version) == (child.uid, child.version)
        )

    # -- updates ----------------------------------------------------------------------------

    def mark_up_to_date(self, obj: Obj, spec_hash: str) -> None:
        """A reconcile compared ``obj`` (just read or written) with what it wants: equal.

        Trusted once the watch reports this very version; its event then re-queues nobody.
        A child the watch has not reported yet (just created) is recorded at once, as its
        watch will report it: no GET while the event is on its way. Anything the watch
        reported stays as it was reported: it may be newer than ``obj``."""
        child = Child.of(obj)
        key = (child.kind, child.namespace, child.name)
        with self._lock:
            reported = self._children.get(key)
            if reported == child:  # one copy of it, not two (24,000 children at 1,000 CRs)
                child = reported
            self._up_to_date[key] = (child, sys.intern(spec_hash))
            deleted = self._deleted.get(key)
            if key not in self._children and (deleted is None or deleted[0] != child.uid):
                self._put(child)

    def listed(self, part: str, kind: str, namespace: str, objects: list[Obj]) -> set[Key]:
        """Replace what one watch (``kind``, in ``namespace`` or everywhere if "") holds;
        returns the (namespace, owner label) of every owner whose children changed."""
        fresh = {(kind, o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}
        changed: set[Key] = set()
        with self._lock:
            stale = [
                key
                for key in self._children
                if key[0] == kind and (not namespace or key[1] == namespace) and key not in fresh
            ]
            for key in stale:
                changed |= self._remove(key)
            for obj in fresh.values():
                changed |= self._put(Child.of({**obj, "kind": kind}))
        self.synced[part].set()
        return changed

    def event(self, kind: str, event_type: str, obj: Obj) -> set[Key]:
        """One watch event; returns the owner it concerns if anything it holds changed."""
        child = Child.of({**obj, "kind": kind})  # not PartialObjectMetadata
        with self._lock:
            if event_type == "DELETED":
                return self._remove((kind, child.namespace, child.name))
            return self._put(child)

    def _put(self, child: Child) -> set[Key]:
        """Record ``child``; returns its owner unless nothing changed, or unless it brings
        the very version at which a reconcile found it up to date (the event of our own
        write: that reconcile acted on exactly this). A change of its status counts alone
        always concerns its owner: another reconcile may have used the counts before."""
        key = (child.kind, child.namespace, child.name)
        before = self._children.get(key)
        if before == child:
            return set()
        changed: set[Key] = set()
        if before is not None and before.owner_label != child.owner_label:
            changed = self._remove(key)
        self._deleted.pop(key, None)
        self._children[key] = child
        owner = (child.namespace, child.owner_label)
        self._by_owner.setdefault(owner, set()).add(key)
        marked = self._up_to_date.get(key)
        if marked is not None and marked[0].uid != child.uid:
            del self._up_to_date[key]  # marked for another object of the same name
        elif (
            marked is not None
            and marked[0] == child
            and (before is None or before.version != child.version)
        ):
            return changed
        return changed | {owner}

    def _remove(self, key: ChildKey) -> set[Key]:
        child = self._children.pop(key, None)
        if child is None:
            return set()
        owner = (child.namespace, child.owner_label)
        siblings = self._by_owner.get(owner, set())
        siblings.discard(key)
        if not siblings:
            self._by_owner.pop(owner, None)
        marked = self._up_to_date.get(key)
        if marked is not None and marked[0].uid == child.uid:
            del self._up_to_date[key]
        self._remember_deleted(key, child.uid)
        return {owner}

    def _remember_deleted(self, key: ChildKey, uid: str) -> None:
        now = time.monotonic()
        self._deleted.pop(key, None)
        self._deleted[key] = (uid, now)
        while next(iter(self._deleted.values()))[1] < now - DELETIONS_KEPT_SECONDS:
            self._deleted.popitem(last=False)
