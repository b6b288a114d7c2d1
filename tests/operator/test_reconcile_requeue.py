"""What a reconcile asks the queue for (retries) and when it writes nothing at all, against
an in-memory API server: a reconcile that the watches will trigger again asks for nothing."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from kubernetes import client

from devkit.crs import full_spec
from jewelry_monitoring.builders.common import Owner
from jewelry_monitoring.builders.desired import MONITORING_KINDS, desired_objects
from jewelry_monitoring.children import ChildCache
from jewelry_monitoring.facts import ClusterFacts
from jewelry_monitoring.kube import Kube
from jewelry_monitoring.reconcile import WATCHED_CRDS, Outcome, Reconciler
from jewelry_monitoring.selection import SELECTING
from jewelry_monitoring.spec import KIND, JewelryMonitoringSpec

Obj = dict[str, Any]


class _Memory(Kube):
    """Objects by (kind, namespace, name); every write succeeds and bumps the version."""

    def __init__(self, *objects: Obj) -> None:
        super().__init__(client.ApiClient(client.Configuration()))
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self._versions = itertools.count(1)
        for obj in objects:
            self._store(obj)

    def _store(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace", ""), meta["name"])
        stored = copy.deepcopy(obj)
        stored["metadata"].setdefault("uid", f"uid-{meta['name']}")
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.objects[key] = stored
        return copy.deepcopy(stored)

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        return copy.deepcopy(self.objects.get((kind, namespace or "", name)))

    def list(self, kind: str, namespace: str | None = None, label_selector: str = "") -> list[Obj]:
        return []

    def apply(self, obj: Obj) -> Obj:
        return self._store(obj)

    def create(self, obj: Obj) -> Obj:
        return self._store(obj)

    def patch_status(self, kind: str, namespace: str, name: str, status: Obj) -> None:
        self.objects[kind, namespace, name]["status"] = copy.deepcopy(status)

    def event(self, involved: Obj, event_type: str, reason: str, message: str) -> None:
        pass


def _facts(established: frozenset[str]) -> ClusterFacts:
    """Every watch has listed: these CRDs Established, no Prometheus, no namespace labels."""
    facts = ClusterFacts(WATCHED_CRDS)
    facts.set_crds(dict.fromkeys(established, True))
    for kind in SELECTING:
        facts.set_selecting(kind, [])
    facts.set_namespaces([])
    return facts


def _cr() -> Obj:
    return {
        "apiVersion": "monitoring.jewelry.io/v1alpha1",
        "kind": KIND,
        "metadata": {"name": "shop", "namespace": "jewelry", "generation": 1},
        "spec": {"app": {"podSelector": {"app": "shop"}}},
    }


def _condition(kube: _Memory, kind: str) -> Obj:
    status = kube.objects[KIND, "jewelry", "shop"]["status"]
    (found,) = [c for c in status["conditions"] if c["type"] == kind]
    return dict(found)


def test_missing_prometheus_operator_crds_ask_for_no_periodic_retry() -> None:
    """The CRD watch re-queues every resource when one of those CRDs becomes Established,
    so polling for them (every resource every 15 s, forever) only costs requests: 500
    resources made an idle operator send about 66 requests a second."""
    kube = _Memory(_cr())
    reconciler = Reconciler(kube, _facts(frozenset()), ChildCache([]))
    outcome = reconciler.reconcile("jewelry", "shop")
    assert _condition(kube, "Degraded")["reason"] == "PrometheusOperatorCRDsMissing"
    assert outcome.retry_after is None
    assert reconciler.reconcile("jewelry", "shop").writes == []  # and nothing else to do


def test_a_resource_in_a_namespace_being_deleted_gets_no_writes() -> None:
    """The namespace controller deletes its content in no particular order: children going
    before their resource made the operator apply them again, patch the status and record
    Events (measured: 12 writes in half a second, the creations refused with 403), into a
    namespace that is going away. The resource counts as gone."""
    kube = _Memory(_cr())
    facts = _facts(WATCHED_CRDS)
    facts.set_namespaces(
        [{"metadata": {"name": "jewelry", "deletionTimestamp": "2026-01-01T00:00:00Z"}}]
    )
    before = copy.deepcopy(kube.objects)
    outcome = Reconciler(kube, facts, ChildCache([])).reconcile("jewelry", "shop")
    assert outcome.writes == []
    assert outcome.gone
    assert kube.objects == before


def test_the_namespace_watch_says_which_namespaces_are_being_deleted() -> None:
    facts = _facts(WATCHED_CRDS)
    live: Obj = {"metadata": {"name": "jewelry"}}
    deleting: Obj = {"metadata": {"name": "jewelry", "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    facts.namespace_event("ADDED", live)
    assert not facts.namespace_terminating("jewelry")
    facts.namespace_event("MODIFIED", deleting)
    assert facts.namespace_terminating("jewelry")
    facts.namespace_event("DELETED", deleting)
    assert not facts.namespace_terminating("jewelry")
    facts.set_namespaces([deleting])
    assert facts.namespace_terminating("jewelry")
    facts.set_namespaces([])
    assert not facts.namespace_terminating("jewelry")


def test_a_new_resource_reports_its_status_before_announcing_its_children() -> None:
    """Ready is what a user (and the bench's "CR -> Ready") waits for: the Event that lists
    the children created goes after the status patch, not one request before it."""
    kube = _Memory(_cr())
    outcome = Reconciler(kube, _facts(WATCHED_CRDS), ChildCache([])).reconcile("jewelry", "shop")
    reports = [w for w in outcome.writes if w in ("Patched status", "Event Created")]
    assert reports == ["Patched status", "Event Created"]


def test_a_reconcile_keeps_of_its_written_children_only_what_the_status_reads() -> None:
    """The API's answer to an apply is the whole object with its managed fields; 16
    reconciles at once held 25 of them each until they ended (issue 19's peak memory)."""
    kube = _Memory()
    reconciler = Reconciler(kube, _facts(WATCHED_CRDS), ChildCache([]))
    spec = JewelryMonitoringSpec.model_validate(full_spec())  # every exporter
    owner = Owner("shop", "jewelry", "uid-shop", spec)
    desired = desired_objects(owner, frozenset(MONITORING_KINDS))
    created, conflicts, failures = reconciler._apply(desired, {}, owner.uid, Outcome())
    assert (conflicts, failures) == ([], [])
    # Before its watches have listed, a reconcile reads each child (a restart that took
    # longer than FACTS_SYNC_SECONDS): the whole objects it read go too.
    before_lists = Reconciler(kube, _facts(WATCHED_CRDS), ChildCache(["not listed yet"]))
    read, _, _ = before_lists._apply(desired, {}, owner.uid, Outcome())
    for observed in (created, read):
        assert set(observed) == {(o["kind"], o["metadata"]["name"]) for o in desired}
        assert any(kind == "Deployment" for kind, _ in observed)
        for (kind, _), child in observed.items():
            assert set(child) <= {"kind", "metadata", "spec", "status"}, kind
            assert set(child["metadata"]) <= {"name", "namespace", "uid", "ownerReferences"}
            assert set(child["spec"]) <= {"replicas"}, kind
