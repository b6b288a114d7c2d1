"""The one level-based reconcile: read the CR, compute the desired children, make it so.

Every trigger (the CR changed, a child was edited or deleted, prometheus-operator's CRDs or a
Prometheus appeared) ends here with just the CR's namespace and name. The function reads the
current state, so running it twice in a row does nothing the second time: no writes, no
events, no status patch.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from jewelry_monitoring.builders.common import OWNER_LABEL, SPEC_HASH_ANNOTATION, Owner
from jewelry_monitoring.builders.desired import MONITORING_KINDS, PRUNABLE_KINDS, desired_objects
from jewelry_monitoring.builders.rules import KNOWN_ALERTS
from jewelry_monitoring.kube import Kube, KubeError
from jewelry_monitoring.selection import evaluate
from jewelry_monitoring.spec import KIND, JewelryMonitoringSpec, secret_refs, semantic_problems
from jewelry_monitoring.status import ChildRef, Condition, JewelryMonitoringStatus, merge_conditions

log = logging.getLogger(__name__)
Obj = dict[str, Any]


@dataclass
class Outcome:
    """What one reconcile did, for the caller's retry decision, logs and tests."""

    writes: list[str] = field(default_factory=list)
    retry_after: float | None = None
    gone: bool = False


def is_subset(wanted: Any, current: Any) -> bool:
    """Whether every field we set has the value we set; fields others add are ignored."""
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(
            key in current and is_subset(value, current[key]) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(current, list)
            and len(wanted) == len(current)
            and all(is_subset(w, c) for w, c in zip(wanted, current, strict=True))
        )
    return bool(wanted == current)


def up_to_date(wanted: Obj, current: Obj) -> bool:
    """Same spec hash (so nothing was removed from the desired object) and no drift."""
    hash_now = current["metadata"].get("annotations", {}).get(SPEC_HASH_ANNOTATION)
    return hash_now == wanted["metadata"]["annotations"][SPEC_HASH_ANNOTATION] and is_subset(
        wanted, current
    )


def owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, status: str, reason: str, message: str, generation: int) -> Condition:
    return Condition(
        type=kind, status=status, reason=reason, message=message, observed_generation=generation
    )


class Reconciler:
    """Reconciles JewelryMonitoring resources through one ``Kube`` client."""

    def __init__(self, kube: Kube, allowed_images: tuple[str, ...] = ()) -> None:
        self.kube = kube
        self.allowed_images = allowed_images

    def reconcile(self, namespace: str, name: str) -> Outcome:
        cr = self.kube.get(KIND, namespace, name)
        if cr is None or cr["metadata"].get("deletionTimestamp"):
            return Outcome(gone=True)  # children go with it: they carry ownerReferences
        outcome = Outcome()
        generation = int(cr["metadata"].get("generation", 0))
        status = JewelryMonitoringStatus.model_validate(cr.get("status") or {})

        problems, spec = self._validate(cr, namespace)
        if spec is None:
            message = "; ".join(problems)
            ready = _condition("Ready", "False", "InvalidSpec", message, generation)
            if self._set_status(cr, status, [ready], status.children, status.exporters, outcome):
                self._event(cr, "Warning", "InvalidSpec", message, outcome)
            return outcome

        owner = Owner(name=name, namespace=namespace, uid=cr["metadata"]["uid"], spec=spec)
        missing_crds = sorted(
            kind for kind, crd in MONITORING_KINDS.items() if not self.kube.crd_established(crd)
        )
        available = frozenset(MONITORING_KINDS) - set(missing_crds)
        desired = desired_objects(owner, available)

        labelled = self._labelled_children(namespace, name, available)
        observed, conflicts, failures = self._apply(cr, desired, labelled, owner.uid, outcome)
        self._prune(cr, desired, labelled, owner.uid, outcome)

        conditions = [
            self._ready(conflicts, failures, generation),
            self._degraded(missing_crds, conflicts, failures, generation),
            self._selected(desired, available, generation),
            self._exporters_available(observed, generation),
        ]
        children = [
            ChildRef(api_version=o["apiVersion"], kind=o["kind"], name=o["metadata"]["name"])
            for o in desired
        ]
        exporters = ",".join(spec.exporters.enabled())
        if self._set_status(cr, status, conditions, children, exporters, outcome):
            # Warn once per change of state, not on every retry of the same problem.
            for conflict in conflicts:
                self._event(cr, "Warning", "OwnershipConflict", conflict, outcome)
            for failure in failures:
                self._event(cr, "Warning", "ApplyFailed", failure, outcome)
        if conflicts or failures:
            outcome.retry_after = 30.0
        elif missing_crds:
            outcome.retry_after = 15.0  # namespaced operators cannot watch CRDs appear
        return outcome

    # -- steps -----------------------------------------------------------------------------

    def _validate(self, cr: Obj, namespace: str) -> tuple[list[str], JewelryMonitoringSpec | None]:
        """The parsed spec, or the reasons it cannot be acted on."""
        try:
            spec = JewelryMonitoringSpec.model_validate(cr.get("spec") or {})
        except ValidationError as error:
            problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
            return problems, None
        problems = semantic_problems(spec, KNOWN_ALERTS, self.allowed_images)
        for where, ref in secret_refs(spec).items():
            secret = self.kube.get("Secret", namespace, ref.name)
            if secret is None:
                problems.append(f"{where}: Secret {ref.name} does not exist")
            elif ref.key not in (secret.get("data") or {}):
                problems.append(f"{where}: Secret {ref.name} has no key {ref.key}")
        return problems, (None if problems else spec)

    def _labelled_children(
        self, namespace: str, name: str, available: frozenset[str]
    ) -> dict[tuple[str, str], Obj]:
        """Every object labelled as this resource's child: one LIST per kind, not a GET per
        child, so an idle reconcile costs a handful of requests whatever the CR enables."""
        selector = f"{OWNER_LABEL}={name}"
        found: dict[tuple[str, str], Obj] = {}
        for kind in (*PRUNABLE_KINDS, "PrometheusRule"):
            if kind in MONITORING_KINDS and kind not in available:
                continue
            for obj in self.kube.list(kind, namespace, selector):
                found[kind, obj["metadata"]["name"]] = obj
        return found

    def _apply(
        self,
        cr: Obj,
        desired: list[Obj],
        labelled: dict[tuple[str, str], Obj],
        uid: str,
        outcome: Outcome,
    ) -> tuple[dict[tuple[str, str], Obj], list[str], list[str]]:
        """Apply what differs; return the children as they now are, conflicts and failures."""
        observed: dict[tuple[str, str], Obj] = {}
        conflicts: list[str] = []
        failures: list[str] = []
        for wanted in desired:
            kind, name = wanted["kind"], wanted["metadata"]["name"]
            try:
                current = labelled.get((kind, name))
                if current is None:  # new, or someone else's object without our label
                    current = self.kube.get(kind, wanted["metadata"]["namespace"], name)
                if current is not None and not owned_by(current, uid):
                    conflicts.append(f"{kind} {name} exists and is not ours")
                    continue
                if current is not None and up_to_date(wanted, current):
                    observed[kind, name] = current
                    continue
                observed[kind, name] = self.kube.apply(wanted)
            except KubeError as error:
                failures.append(f"{kind} {name}: {error.message}")
                continue
            verb = "Created" if current is None else "Updated"
            outcome.writes.append(f"{verb} {kind} {name}")
            self._event(cr, "Normal", verb, f"{verb} {kind} {name}", outcome)
        return observed, conflicts, failures

    def _prune(
        self,
        cr: Obj,
        desired: list[Obj],
        labelled: dict[tuple[str, str], Obj],
        uid: str,
        outcome: Outcome,
    ) -> None:
        """Delete children we own that are no longer desired (e.g. a disabled exporter)."""
        keep = {(o["kind"], o["metadata"]["name"]) for o in desired}
        for (kind, name), obj in sorted(labelled.items()):
            if (kind, name) in keep or kind not in PRUNABLE_KINDS or not owned_by(obj, uid):
                continue
            self.kube.delete(obj)
            outcome.writes.append(f"Deleted {kind} {name}")
            self._event(cr, "Normal", "Deleted", f"Deleted {kind} {name}", outcome)

    def _ready(self, conflicts: list[str], failures: list[str], generation: int) -> Condition:
        if conflicts:
            return _condition(
                "Ready",
                "False",
                "OwnershipConflict",
                "; ".join(conflicts) + ": delete or rename them, or rename this resource",
                generation,
            )
        if failures:
            return _condition("Ready", "False", "ApplyFailed", "; ".join(failures), generation)
        return _condition("Ready", "True", "Reconciled", "all children are up to date", generation)

    def _degraded(
        self, missing_crds: list[str], conflicts: list[str], failures: list[str], generation: int
    ) -> Condition:
        if missing_crds:
            names = ", ".join(MONITORING_KINDS[kind] for kind in missing_crds)
            return _condition(
                "Degraded",
                "True",
                "PrometheusOperatorCRDsMissing",
                f"CRDs missing: {names}; exporters and dashboards are created, "
                "monitors and rules will follow once prometheus-operator's CRDs are installed",
                generation,
            )
        if conflicts or failures:
            reason = "OwnershipConflict" if conflicts else "ApplyFailed"
            return _condition(
                "Degraded", "True", reason, "; ".join(conflicts + failures), generation
            )
        return _condition("Degraded", "False", "AsExpected", "", generation)

    def _selected(
        self, desired: list[Obj], available: frozenset[str], generation: int
    ) -> Condition:
        if "ServiceMonitor" not in available or not self.kube.crd_established(
            "prometheuses.monitoring.coreos.com"
        ):
            result = ("Unknown", "NoPrometheusCRD", "the Prometheus CRD is not installed")
        else:
            prometheuses = self.kube.list("Prometheus")
            namespaces = {
                ns["metadata"]["name"]: ns["metadata"].get("labels", {})
                for ns in (self.kube.list("Namespace") if prometheuses else [])
            }
            selection = evaluate(prometheuses, desired, namespaces)
            result = (selection.status, selection.reason, selection.message)
        return _condition("SelectedByPrometheus", *result, generation)

    def _exporters_available(
        self, observed: dict[tuple[str, str], Obj], generation: int
    ) -> Condition:
        """Whether the exporter pods run; informational, Ready does not wait for it."""
        waiting = []
        for (kind, name), current in sorted(observed.items()):
            if kind not in ("Deployment", "DaemonSet"):
                continue
            state = current.get("status", {})
            want = state.get("desiredNumberScheduled", current["spec"].get("replicas", 1))
            have = state.get("numberAvailable", state.get("availableReplicas", 0))
            if not want or have < want:
                waiting.append(f"{name} {have or 0}/{want or 0}")
        if not waiting:
            return _condition("ExportersAvailable", "True", "Available", "", generation)
        return _condition(
            "ExportersAvailable",
            "False",
            "Unavailable",
            "waiting for " + ", ".join(waiting),
            generation,
        )

    # -- writes to the CR itself -----------------------------------------------------------

    def _set_status(
        self,
        cr: Obj,
        status: JewelryMonitoringStatus,
        conditions: list[Condition],
        children: list[ChildRef],
        exporters: str,
        outcome: Outcome,
    ) -> bool:
        """Patch the status only if it changes; returns whether it did."""
        wanted_types = {c.type for c in conditions}
        kept = [c for c in status.conditions if c.type not in wanted_types]
        merged = merge_conditions(status.conditions, conditions, _now()) + kept
        new = JewelryMonitoringStatus(
            observed_generation=int(cr["metadata"].get("generation", 0)),
            conditions=sorted(merged, key=lambda c: c.type),
            children=children,
            exporters=exporters,
        )
        if new == status:
            return False
        meta = cr["metadata"]
        self.kube.patch_status(KIND, meta["namespace"], meta["name"], new.model_dump(by_alias=True))
        outcome.writes.append("Patched status")
        return True

    def _event(self, cr: Obj, event_type: str, reason: str, message: str, outcome: Outcome) -> None:
        self.kube.event(cr, event_type, reason, message)
        outcome.writes.append(f"Event {reason}")
