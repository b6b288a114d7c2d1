"""The one level-based reconcile: read the CR, compute the desired children, make it so.

Every trigger (the CR changed, a child was edited or deleted, prometheus-operator's CRDs or a
Prometheus appeared) ends here with just the CR's namespace and name. The function reads the
current state, so running it twice in a row does nothing the second time: no writes, no
events, no status patch.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from jewelry_monitoring.builders.common import (
    APP_COMPONENT,
    OWNER_LABEL,
    SPEC_HASH_ANNOTATION,
    Owner,
    child_name,
    instance_label,
)
from jewelry_monitoring.builders.desired import (
    MONITORING_KINDS,
    PRUNABLE_KINDS,
    desired_objects,
    needed_monitoring_kinds,
    size_problems,
)
from jewelry_monitoring.builders.exporters import component as exporter_component
from jewelry_monitoring.builders.routing import ROUTING_COMPONENT
from jewelry_monitoring.builders.rules import KNOWN_ALERTS
from jewelry_monitoring.children import Child, ChildCache, status_view
from jewelry_monitoring.config import PLAIN_EXPORTER_PODS, ExporterPods, ResourceDefaults
from jewelry_monitoring.facts import ClusterFacts
from jewelry_monitoring.fieldsets import applied_fields, digest
from jewelry_monitoring.kube import Kube, KubeError
from jewelry_monitoring.monitored import Judgement, is_young
from jewelry_monitoring.observe import Observer
from jewelry_monitoring.promapi import PrometheusAPI
from jewelry_monitoring.selection import ALERTMANAGER, PROMETHEUS, Selecting, evaluate
from jewelry_monitoring.spec import (
    KIND,
    JewelryMonitoringSpec,
    duration_seconds,
    quantity_value,
    secret_refs,
    validate,
    with_operator_defaults,
)
from jewelry_monitoring.status import ChildRef, Condition, JewelryMonitoringStatus, merge_conditions
from jewelry_monitoring.targets import SERVICE_NAME_LABEL, Verdict, app_targets_found
from jewelry_monitoring.watched import Endpoints, Resources
from jewelry_monitoring.which_prometheus import Asked, choose

log = logging.getLogger(__name__)
Obj = dict[str, Any]
# For a reconcile's independent requests (GET per Secret, GET and apply per child), which it
# makes in parallel; shared by all reconciles (the queue runs 16).
_CHILD_REQUESTS = ThreadPoolExecutor(32, thread_name_prefix="child")
# Ready's and Degraded's reason when a Prometheus exists and none selects our objects.
NOT_SELECTED = "NotSelectedByPrometheus"
# The API's words for an update that would change a field that cannot change (422): most
# fields ("field is immutable"), a Service's addresses and IP families ("may not change once
# set").
IMMUTABLE = ("field is immutable", "may not change once set")
# Every CRD whose presence changes what a reconcile does.
WATCHED_CRDS = frozenset({*MONITORING_KINDS.values(), PROMETHEUS.crd, ALERTMANAGER.crd})


@dataclass
class Outcome:
    """What one reconcile did, for the caller's retry decision, logs and tests."""

    writes: list[str] = field(default_factory=list)
    retry_after: float | None = None
    # Look again after this long although nothing failed: the targets check's interval.
    check_again_after: float | None = None
    gone: bool = False
    # Names of the Secrets (in the resource's namespace) its spec references: a change to
    # one of them must reconcile it again.
    secrets: frozenset[str] = frozenset()
    # Requests made to Prometheus (the checks' load on it).
    prometheus_requests: int = 0


def is_subset(wanted: Any, current: Any, path: tuple[str, ...] = ()) -> bool:
    """Whether every field we set has the value we set; fields others add are ignored.

    Compared as the API server stores them: a quantity by value ("0.5" is "500m"), and a
    zero value ("", false, 0) that the server omits counts as present.
    """
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(
            is_subset(value, current[key], (*path, key))
            if key in current
            else value in ("", False)  # 0 == False
            for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(current, list)
            and len(wanted) == len(current)
            and all(is_subset(w, c, path) for w, c in zip(wanted, current, strict=True))
        )
    if wanted == current:
        return True
    if path[-3:-1] in (("resources", "requests"), ("resources", "limits")):
        amount = quantity_value(wanted) if isinstance(wanted, str) else None
        return amount is not None and isinstance(current, str) and amount == quantity_value(current)
    return False


def up_to_date(wanted: Obj, current: Obj) -> bool:
    """Same spec hash (so nothing was removed from the desired object) and no drift."""
    hash_now = current["metadata"].get("annotations", {}).get(SPEC_HASH_ANNOTATION)
    return hash_now == wanted["metadata"]["annotations"][SPEC_HASH_ANNOTATION] and is_subset(
        wanted, current
    )


def owned_by(obj: Obj, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


def _component_of(spec_path: str) -> str:
    """The component that uses the setting at ``spec_path`` ("exporters.redis.password")."""
    section, _, rest = spec_path.partition(".")
    if section == "routing":
        return ROUTING_COMPONENT
    return APP_COMPONENT if section == "app" else exporter_component(rest.partition(".")[0])


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fields(verdict: Verdict) -> tuple[str, str, str]:
    return verdict.status, verdict.reason, verdict.message


def _condition(kind: str, status: str, reason: str, message: str, generation: int) -> Condition:
    return Condition(
        type=kind, status=status, reason=reason, message=message, observed_generation=generation
    )


class Reconciler:
    """Reconciles JewelryMonitoring resources through one ``Kube`` client, reading what it
    needs to know of the rest of the cluster from ``facts`` and of its children from
    ``children`` (both kept by watches, not requested)."""

    def __init__(
        self,
        kube: Kube,
        facts: ClusterFacts,
        children: ChildCache,
        allowed_images: tuple[str, ...] = (),
        runbook_url_base: str = "",
        prometheus: Callable[[str], PrometheusAPI] = PrometheusAPI,
        exporter_pods: ExporterPods = PLAIN_EXPORTER_PODS,
        defaults: ResourceDefaults | None = None,
        resources: Resources | None = None,
        endpoints: Endpoints | None = None,
    ) -> None:
        """``resources`` and ``endpoints``, kept by watches, save the GET of the resource
        and the LIST of its EndpointSlices; without them (or before they know) the
        reconcile asks the API server."""
        self.kube = kube
        self.facts = facts
        self.children = children
        self.allowed_images = allowed_images
        self.runbook_url_base = runbook_url_base
        self.exporter_pods = exporter_pods
        self.observer = Observer(prometheus)
        self.defaults = defaults or ResourceDefaults()
        self.resources = resources
        self.endpoints = endpoints
        # (namespace, Secret) -> lock of the one reconcile reading it (the others wait)
        self._secret_reads: dict[tuple[str, str], threading.Lock] = {}

    def _resource(self, namespace: str, name: str) -> Obj | None:
        known = self.resources.get(namespace, name) if self.resources else None
        return known if known is not None else self.kube.get(KIND, namespace, name)

    def _slices(self, namespace: str, name: str) -> list[Obj]:
        """The EndpointSlices of the resource's Services (they carry its owner label)."""
        owner = instance_label(name)
        known = self.endpoints.of_owner(namespace, owner) if self.endpoints else None
        if known is not None:
            return known
        return self.kube.list("EndpointSlice", namespace, f"{OWNER_LABEL}={owner}")

    def reconcile(self, namespace: str, name: str) -> Outcome:
        # A namespace being deleted takes nothing new, and its content goes in any order:
        # children deleted before their resource must not be applied again.
        if self.facts.namespace_terminating(namespace):
            self.observer.forget((namespace, name))
            return Outcome(gone=True)
        cr = self._resource(namespace, name)
        if cr is None or cr["metadata"].get("deletionTimestamp"):
            self.observer.forget((namespace, name))
            return Outcome(gone=True)  # children go with it: they carry ownerReferences
        outcome = Outcome()
        generation = int(cr["metadata"].get("generation", 0))
        status = JewelryMonitoringStatus.model_validate(cr.get("status") or {})

        # The chart's defaults fill what the spec leaves empty, and are validated with it.
        raw = self.defaults.apply(cr.get("spec") or {})
        problems, spec = validate(raw, KNOWN_ALERTS, self.allowed_images)
        missing_secrets = self._missing_secrets(spec, namespace, outcome) if spec else {}
        if problems or spec is None:
            message = "; ".join(problems + list(missing_secrets.values()))
            self._refuse(cr, status, "InvalidSpec", message, outcome)
            return outcome

        spec = with_operator_defaults(spec, self.runbook_url_base)
        owner = Owner(name=name, namespace=namespace, uid=cr["metadata"]["uid"], spec=spec)
        available = frozenset(
            kind for kind, crd in MONITORING_KINDS.items() if self.facts.established(crd)
        )
        missing_crds = sorted(needed_monitoring_kinds(spec) - available)
        desired = desired_objects(owner, available, self.exporter_pods)
        too_large = size_problems(desired)
        if too_large:  # the server would refuse them on every retry: nothing is applied
            self._refuse(cr, status, "ObjectTooLarge", "; ".join(too_large), outcome)
            return outcome
        # A component whose Secret is missing is held back as it is (neither created, changed
        # nor pruned); everything else goes ahead.
        held_names = {child_name(name, _component_of(where)) for where in missing_secrets}

        labelled = self.children.owned_by(namespace, instance_label(name))
        ready_to_apply = [o for o in desired if o["metadata"]["name"] not in held_names]
        observed, conflicts, failures = self._apply(ready_to_apply, labelled, owner.uid, outcome)
        self._prune(desired, labelled, owner.uid, outcome)

        held = [
            f"{problem}: {_component_of(where)} is held back until it does"
            for where, problem in missing_secrets.items()
        ]
        asked = choose(spec.prometheus, self.defaults, self.facts.selecting(PROMETHEUS.kind))
        selected = self._selected(spec, desired, available, asked, generation)
        slices = self._slices(namespace, name)
        interval = duration_seconds(spec.prometheus.check_interval if spec.prometheus else "1m")
        not_selected = "" if selected[0].status == "True" else selected[0].message
        created = str(cr["metadata"].get("creationTimestamp") or "")
        young = is_young(created, datetime.datetime.now(datetime.UTC), interval)
        observation = self.observer.observe(
            owner, desired, slices, asked, not_selected, status, interval, young
        )
        outcome.prometheus_requests = observation.requests
        monitored = observation.monitored
        conditions = [
            self._ready(conflicts, failures, held, selected[0], monitored, generation),
            self._degraded(
                missing_crds, conflicts, failures, held, selected[0], monitored, generation
            ),
            *selected,
            self._exporters_available(observed, generation),
            self._app_targets_found(owner, slices, generation),
            *(
                _condition(kind, *_fields(verdict), generation)
                for kind, verdict in observation.conditions.items()
            ),
        ]
        children = [
            ChildRef(api_version=o["apiVersion"], kind=o["kind"], name=o["metadata"]["name"])
            for o in desired
            if o["metadata"]["name"] not in held_names
            or (o["kind"], o["metadata"]["name"]) in labelled
        ]
        fields = {
            "children": children,
            "exporters": ",".join(spec.exporters.enabled()),
            "budget": observation.budget,
            "slos": observation.slos,
            "targets": observation.targets,
            "alerts_that_cannot_fire": observation.cannot_fire,
        }
        try:
            if self._set_status(cr, status, conditions, outcome, fields):
                # Warn once per change of state, not on every retry of the same problem.
                for conflict in conflicts:
                    self._event(cr, "Warning", "OwnershipConflict", conflict, outcome)
                for failure in failures:
                    self._event(cr, "Warning", "ApplyFailed", failure, outcome)
                for problem in held:
                    self._event(cr, "Warning", "SecretMissing", problem, outcome)
        finally:
            # After the status, which is what a user waits for (Ready), not one request
            # before it; even if the patch failed: the retry finds the children made.
            self._announce(cr, outcome)
        # Missing CRDs need no retry: the CRD watch (every mode runs it) re-queues every
        # resource when one of them becomes Established.
        if conflicts or failures:
            outcome.retry_after = 30.0
        if asked.url:
            # The Prometheus check polls through the queue's deadline: only while the resource
            # exists (a gone resource is forgotten with its deadline); reads only when the
            # answer is unchanged.
            outcome.check_again_after = interval
        return outcome

    def report_failure(self, namespace: str, name: str, message: str) -> None:
        """Say on the resource that reconciling it keeps failing (Ready=False, ReconcileError),
        keeping the rest of its status: the queue calls this after repeated failures."""
        cr = self.kube.get(KIND, namespace, name)
        if cr is None or cr["metadata"].get("deletionTimestamp"):
            return
        generation = int(cr["metadata"].get("generation", 0))
        status = JewelryMonitoringStatus.model_validate(cr.get("status") or {})
        ready = _condition("Ready", "False", "ReconcileError", message, generation)
        outcome = Outcome()
        if self._set_status(cr, status, [ready], outcome):
            self._event(cr, "Warning", "ReconcileError", message, outcome)

    # -- steps -----------------------------------------------------------------------------

    def _missing_secrets(
        self, spec: JewelryMonitoringSpec, namespace: str, outcome: Outcome
    ) -> dict[str, str]:
        """What is wrong with each referenced Secret key, by the spec path naming it.

        Only key names are looked at; values are dropped at once and never logged. The
        Secrets' watch (metadata only) tells when one changed: a Secret is read once per
        version, not in every reconcile."""
        refs = secret_refs(spec)
        outcome.secrets = frozenset(ref.name for ref in refs.values())

        def key_names(secret_name: str) -> frozenset[str] | None:
            """Read only if it changed since last read, or is missing; reconciles that need
            it at once (after a restart, all of a namespace's) wait for one read."""
            known = self.facts.secret_key_names(namespace, secret_name)
            if known is not None:
                return known
            with self._secret_reads.setdefault((namespace, secret_name), threading.Lock()):
                known = self.facts.secret_key_names(namespace, secret_name)
                if known is not None:
                    return known
                secret = self.kube.get("Secret", namespace, secret_name)
                return None if secret is None else self.facts.remember_secret_keys(secret)

        names = sorted(outcome.secrets)
        keys = dict(zip(names, _CHILD_REQUESTS.map(key_names, names), strict=True))
        missing = {}
        for where, ref in refs.items():
            present = keys[ref.name]
            if present is None:
                missing[where] = f"{where}: Secret {ref.name} does not exist"
            elif ref.key not in present:
                missing[where] = f"{where}: Secret {ref.name} has no key {ref.key}"
        return missing

    def _apply(
        self,
        desired: list[Obj],
        labelled: dict[tuple[str, str], Child],
        uid: str,
        outcome: Outcome,
    ) -> tuple[dict[tuple[str, str], Obj], list[str], list[str]]:
        """Apply what differs; return the children as they now are, conflicts and failures.

        What the child watches know decides the request, so that a new resource's children
        cost one request each and a confirmed one none:
        - ours, with the wanted spec hash, found up to date at the version the watch shows,
          or still owning exactly the fields the wanted object sets (our Apply entry's
          digest: nobody changed or removed one since we applied it, even before a
          restart): no request;
        - not there while the watches have listed everything: created by an apply that
          fails (409) if an object of that name exists after all, which then is read;
        - ours with another spec hash: applied at once (no GET: the cache says it is ours);
        - any other case (changed by someone, not seen by the watch yet, someone else's
          object): read (GET), compared, and applied only if it differs and is ours.
        The children are independent, so they are checked and applied in parallel.
        """
        observed: dict[tuple[str, str], Obj] = {}
        conflicts: list[str] = []
        failures: list[str] = []
        complete = self.children.complete()

        def apply_one(wanted: Obj) -> tuple[str, Obj | None, str]:
            """What happened (Created, Updated, Replaced, UpToDate, Conflict, Failed), the
            child as it now is, and the API's message if it failed."""
            kind, name = wanted["kind"], wanted["metadata"]["name"]
            wanted_hash = wanted["metadata"]["annotations"][SPEC_HASH_ANNOTATION]
            cached = labelled.get((kind, name))
            ours = cached is not None and uid in cached.owner_uids
            if (
                cached is not None
                and ours
                and cached.spec_hash == wanted_hash
                and (
                    self.children.known_up_to_date(cached, wanted_hash)
                    or cached.applied == digest(applied_fields(wanted))
                )
            ):
                return "UpToDate", cached.as_object(), ""
            try:
                if cached is None and complete:
                    try:
                        created = self.kube.apply_new(wanted)
                    except KubeError as error:
                        if error.status != 409:
                            raise
                    else:
                        self._mark_if_up_to_date(wanted, created, wanted_hash)
                        return "Created", created, ""
                elif ours and cached is not None and cached.spec_hash != wanted_hash:
                    result, applied = self._apply_or_replace(wanted, cached.as_object())
                    self._mark_if_up_to_date(wanted, applied, wanted_hash)
                    return result, applied, ""
                # Changed by someone, not seen by the watch yet, or someone else's object
                current = self.kube.get(kind, wanted["metadata"]["namespace"], name)
                if current is not None and not owned_by(current, uid):
                    return "Conflict", None, ""
                if current is not None and up_to_date(wanted, current):
                    self.children.mark_up_to_date(current, wanted_hash)
                    return "UpToDate", current, ""
                if current is None:
                    result, applied = "Created", self.kube.apply(wanted)
                else:
                    result, applied = self._apply_or_replace(wanted, current)
                self._mark_if_up_to_date(wanted, applied, wanted_hash)
                return result, applied, ""
            except KubeError as error:
                return "Failed", None, error.message

        def applied_one(wanted: Obj) -> tuple[str, Obj | None, str]:
            """``apply_one``, keeping of the child only what the status reads (names,
            owners, replica counts): the API's answer is the whole object with its managed
            fields (a PrometheusRule ~70 KB of JSON), and 16 reconciles at once held 25 of
            them each until they ended (issue 19: the operator's peak memory)."""
            result, child, message = apply_one(wanted)
            return result, (None if child is None else status_view(child)), message

        for wanted, (result, child, message) in zip(
            desired, _CHILD_REQUESTS.map(applied_one, desired), strict=True
        ):
            kind, name = wanted["kind"], wanted["metadata"]["name"]
            if result == "Conflict":
                conflicts.append(f"{kind} {name} exists and is not ours")
            elif result == "Failed":
                failures.append(f"{kind} {name}: {message}")
            elif child is not None:
                observed[kind, name] = child
                if result != "UpToDate":
                    outcome.writes.append(f"{result} {kind} {name}")
        return observed, conflicts, failures

    def _apply_or_replace(self, wanted: Obj, current: Obj) -> tuple[str, Obj]:
        """Apply ``wanted`` over ``current`` (ours); if the API refuses because a field that
        cannot change would change (an exporter Service that an earlier version gave a
        ClusterIP and this one makes headless, a Deployment's selector), delete exactly
        ``current`` and create ``wanted`` in its place: the only way to reach the wanted
        state, at the cost of a moment without that child."""
        try:
            return "Updated", self.kube.apply(wanted)
        except KubeError as error:
            if error.status != 422 or not any(words in error.message for words in IMMUTABLE):
                raise
        self.kube.delete(current)
        return "Replaced", self.kube.apply_new(wanted)

    def _mark_if_up_to_date(self, wanted: Obj, written: Obj, wanted_hash: str) -> None:
        if up_to_date(wanted, written):
            self.children.mark_up_to_date(written, wanted_hash)

    def _prune(
        self,
        desired: list[Obj],
        labelled: dict[tuple[str, str], Child],
        uid: str,
        outcome: Outcome,
    ) -> None:
        """Delete children we own that are no longer desired (e.g. a disabled exporter)."""
        keep = {(o["kind"], o["metadata"]["name"]) for o in desired}
        for (kind, name), child in sorted(labelled.items()):
            if (kind, name) in keep or kind not in PRUNABLE_KINDS or uid not in child.owner_uids:
                continue
            self.kube.delete(child.as_object())
            outcome.writes.append(f"Deleted {kind} {name}")

    def _announce(self, cr: Obj, outcome: Outcome) -> None:
        """One Event per kind of change a reconcile made to children ("Created Deployment a,
        Service b"), not one per child: a new resource would otherwise cost a write per child
        just to tell about it."""
        changed: dict[str, list[str]] = {}
        for write in outcome.writes:
            verb, _, what = write.partition(" ")
            if verb in ("Created", "Updated", "Replaced", "Deleted"):
                changed.setdefault(verb, []).append(what)
        for verb, objects in changed.items():
            self._event(cr, "Normal", verb, f"{verb} {', '.join(objects)}", outcome)

    def _ready(
        self,
        conflicts: list[str],
        failures: list[str],
        held: list[str],
        selected: Condition,
        monitored: Judgement,
        generation: int,
    ) -> Condition:
        """True when our objects are applied, a Prometheus (if one exists) loads them and,
        when the operator can ask one, it scrapes the app and has loaded the rules:
        applied objects that nothing scrapes monitor nothing (``monitored``)."""
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
        if held:
            return _condition("Ready", "False", "SecretMissing", "; ".join(held), generation)
        if selected.status == "False":
            return _condition("Ready", "False", NOT_SELECTED, selected.message, generation)
        return _condition("Ready", *_fields(monitored.ready), generation)

    def _degraded(
        self,
        missing_crds: list[str],
        conflicts: list[str],
        failures: list[str],
        held: list[str],
        selected: Condition,
        monitored: Judgement,
        generation: int,
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
        if held:
            return _condition("Degraded", "True", "SecretMissing", "; ".join(held), generation)
        if selected.status == "False":
            return _condition("Degraded", "True", NOT_SELECTED, selected.message, generation)
        if monitored.degraded is not None:
            return _condition("Degraded", *_fields(monitored.degraded), generation)
        return _condition("Degraded", "False", "AsExpected", "", generation)

    def _selected(
        self,
        spec: JewelryMonitoringSpec,
        desired: list[Obj],
        available: frozenset[str],
        asked: Asked,
        generation: int,
    ) -> list[Condition]:
        """SelectedByPrometheus (by the Prometheus resource the operator asks, when it asks
        one), and SelectedByAlertmanager: that one only while routing is configured (else
        there is nothing to select)."""
        conditions = [
            self._selected_by(
                PROMETHEUS, "ServiceMonitor", desired, available, generation, asked.resource
            )
        ]
        if spec.routing is None:
            conditions.append(
                _condition(
                    "SelectedByAlertmanager",
                    "Unknown",
                    "RoutingNotConfigured",
                    "spec.routing is not set: no AlertmanagerConfig to select",
                    generation,
                )
            )
        else:
            conditions.append(
                self._selected_by(
                    ALERTMANAGER, "AlertmanagerConfig", desired, available, generation
                )
            )
        return conditions

    def _selected_by(
        self,
        selecting: Selecting,
        our_kind: str,
        desired: list[Obj],
        available: frozenset[str],
        generation: int,
        only: tuple[str, str] | None = None,
    ) -> Condition:
        """The ``SelectedBy<kind>`` condition: does a ``selecting.kind`` resource (``only``
        that one, when given and it exists) load ours?"""
        kind = selecting.kind
        if our_kind not in available or not self.facts.established(selecting.crd):
            result = ("Unknown", f"No{kind}CRD", f"the {kind} CRD is not installed")
        else:
            selectors = self.facts.selecting(kind)
            chosen = [
                s for s in selectors if (s["metadata"]["namespace"], s["metadata"]["name"]) == only
            ]
            selectors = chosen or selectors
            namespaces = self.facts.namespace_labels() if selectors else {}
            selection = evaluate(selectors, desired, namespaces, selecting)
            result = (selection.status, selection.reason, selection.message)
        return _condition(f"SelectedBy{kind}", *result, generation)

    def _exporters_available(
        self, observed: dict[tuple[str, str], Obj], generation: int
    ) -> Condition:
        """Whether the exporter pods run; informational, Ready does not wait for it."""
        waiting = []
        for (kind, name), current in sorted(observed.items()):
            if kind != "Deployment":
                continue
            want = current["spec"].get("replicas", 1)
            have = current.get("status", {}).get("availableReplicas", 0)
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

    def _app_targets_found(self, owner: Owner, slices: list[Obj], generation: int) -> Condition:
        """Whether the app Service has endpoints: Ready says our objects are applied, this
        says whether there is anything to scrape (a typo in the pod selector: nothing).
        ``slices``: the EndpointSlices of all our Services (they carry the owner label)."""
        if not owner.spec.app.enabled:
            return _condition(
                "AppTargetsFound", "Unknown", "AppDisabled", "app.enabled is false", generation
            )
        service = child_name(owner.name, APP_COMPONENT)
        of_app = [
            s for s in slices if s["metadata"].get("labels", {}).get(SERVICE_NAME_LABEL) == service
        ]
        verdict = app_targets_found(service, owner.namespace, owner.spec.app.pod_selector, of_app)
        return _condition("AppTargetsFound", *_fields(verdict), generation)

    # -- writes to the CR itself -----------------------------------------------------------

    def _refuse(
        self, cr: Obj, status: JewelryMonitoringStatus, reason: str, message: str, outcome: Outcome
    ) -> None:
        """Ready=False with why, and one Warning event per change: the spec must change
        before anything can be done, so there is nothing to retry."""
        generation = int(cr["metadata"].get("generation", 0))
        ready = _condition("Ready", "False", reason, message, generation)
        if self._set_status(cr, status, [ready], outcome):
            self._event(cr, "Warning", reason, message, outcome)

    def _set_status(
        self,
        cr: Obj,
        status: JewelryMonitoringStatus,
        conditions: list[Condition],
        outcome: Outcome,
        fields: dict[str, Any] | None = None,
    ) -> bool:
        """Patch the status only if it changes; returns whether it did. ``conditions`` replace
        those of their types, ``fields`` the status fields they name; the rest is kept."""
        wanted_types = {c.type for c in conditions}
        kept = [c for c in status.conditions if c.type not in wanted_types]
        merged = merge_conditions(status.conditions, conditions, _now()) + kept
        new = status.model_copy(
            update={
                "observed_generation": int(cr["metadata"].get("generation", 0)),
                "conditions": sorted(merged, key=lambda c: c.type),
                **(fields or {}),
            }
        )
        if new == status:
            return False
        meta = cr["metadata"]
        written = self.kube.patch_status(
            KIND, meta["namespace"], meta["name"], new.model_dump(by_alias=True)
        )
        if self.resources is not None and written:
            self.resources.written(written)
        outcome.writes.append("Patched status")
        return True

    def _event(self, cr: Obj, event_type: str, reason: str, message: str, outcome: Outcome) -> None:
        self.kube.event(cr, event_type, reason, message)
        outcome.writes.append(f"Event {reason}")
