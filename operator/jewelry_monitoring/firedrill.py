"""`jewelry-monitoring fire-drill`: does every receiver of a resource's routing really deliver?

Alertmanager cannot test a receiver (prometheus/alertmanager#2845), so the drill does what a
real incident would do, on purpose and labelled as such:

* **Plan** (pure, from the spec, ``drillplan``): one synthetic alert per route of
  ``spec.routing`` and one for the default receiver.
* **Safety**: nothing is sent without ``--yes``. Before sending, the drill reads the
  Alertmanager's running configuration: if our receivers are not in it (the
  AlertmanagerConfig is not selected or not loaded), the alerts would go to its default
  receiver, somebody else's pager, so nothing is sent.
* **Send and observe**: the alerts carry the resource's labels (``jewelry_monitoring``,
  ``namespace``: what its AlertmanagerConfig matches) and a run id. The Alertmanager API says
  which receivers each alert was routed to and whether it is silenced or inhibited; its own
  counters say whether the notification requests succeeded. Alertmanager 0.25 counts by
  ``integration`` only (``receiver_name`` is 0.27's ``--enable-feature=
  receiver-name-in-metrics``), so alerts are sent in batches in which no integration (or,
  with receiver names, no receiver) is used twice: each counter change then belongs to one
  receiver. Another notification of the same integration at the same moment can still be
  counted as the drill's (an unrelated success may hide a failing receiver); with receiver
  names it cannot.
* **Resolve**: every alert is resolved at the end (and expires by itself if the drill is
  killed), so each working receiver gets a firing and a resolved notification.
"""

from __future__ import annotations

import datetime
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from jewelry_monitoring.alertmanagerapi import AlertmanagerAPI, AlertmanagerError, Sample
from jewelry_monitoring.builders.common import child_name, owner_selector
from jewelry_monitoring.builders.desired import MONITORING_KINDS
from jewelry_monitoring.builders.routing import ROUTING_COMPONENT
from jewelry_monitoring.drillplan import (
    DISCARDS,
    FAILED,
    NO_ATTEMPT,
    NOT_ROUTED,
    PLANNED,
    SENT,
    SUPPRESSED,
    DrillAlert,
    Outcome,
    Plan,
    batches,
    integrations,
    plan,
    planned,
)
from jewelry_monitoring.kube import Kube
from jewelry_monitoring.selection import ALERTMANAGER, evaluate
from jewelry_monitoring.spec import JewelryMonitoringSpec, ReceiverSpec, RoutingSpec

Obj = dict[str, Any]
# The run id on every alert of one drill: tells them from real alerts and other runs.
RUN_LABEL = "fire_drill"
# Every notification request, and the failed ones (Alertmanager retries a failed request
# until its flush times out); a notification Alertmanager gave up on.
REQUESTS = "alertmanager_notification_requests_total"
REQUESTS_FAILED = "alertmanager_notification_requests_failed_total"
GAVE_UP = "alertmanager_notifications_failed_total"
COUNTERS = (REQUESTS, REQUESTS_FAILED, GAVE_UP)
RECEIVER_NAME = "receiver_name"


class DrillError(Exception):
    """The drill cannot run: nothing was sent."""


def _totals(samples: list[Sample], by_receiver: bool) -> dict[tuple[str, str, str], float]:
    """Counter -> (name, receiver or "", integration) -> value (summed over ``reason``)."""
    totals: dict[tuple[str, str, str], float] = {}
    for sample in samples:
        receiver = sample.labels.get(RECEIVER_NAME, "") if by_receiver else ""
        key = (sample.name, receiver, sample.labels.get("integration", ""))
        totals[key] = totals.get(key, 0.0) + sample.value
    return totals


@dataclass
class _Watch:
    """What one (alert, receiver) pair has shown so far while its batch runs."""

    alert: DrillAlert
    receiver: str
    integrations: tuple[str, ...]
    outcome: Outcome | None = None


@dataclass
class FireDrill:
    """One drill of one resource's routing through the Alertmanager at ``api``."""

    api: AlertmanagerAPI
    namespace: str
    name: str
    routing: RoutingSpec
    timeout: float = 600.0
    # How long after the group wait a notification may still succeed (Alertmanager retries
    # a failed request) before the receiver is judged: failed, or not attempted.
    grace: float = 20.0
    poll: float = 1.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    def full_name(self, receiver: str) -> str:
        """The receiver's name in the Alertmanager (prometheus-operator prefixes it with the
        AlertmanagerConfig's namespace and name)."""
        return f"{self.namespace}/{child_name(self.name, ROUTING_COMPONENT)}/{receiver}"

    @property
    def receivers(self) -> dict[str, ReceiverSpec]:
        return {receiver.name: receiver for receiver in self.routing.receivers}

    def loaded(self) -> str:
        """The Alertmanager's version, once its running configuration has our receivers;
        DrillError otherwise (the drill's alerts would reach its default receiver)."""
        status = self.api.status()
        version = str((status.get("versionInfo") or {}).get("version", "unknown"))
        try:
            config = yaml.safe_load((status.get("config") or {}).get("original") or "") or {}
        except yaml.YAMLError as error:
            raise DrillError(f"{self.api.url}: unreadable configuration: {error}") from None
        names = {r.get("name") for r in config.get("receivers") or [] if isinstance(r, dict)}
        missing = [r for r in self.receivers if self.full_name(r) not in names]
        if missing:
            raise DrillError(
                f"the Alertmanager at {self.api.url} (version {version}) has not loaded the "
                f"routing of {self.namespace}/{self.name}: no receiver "
                + ", ".join(self.full_name(r) for r in missing)
                + ". Is its AlertmanagerConfig selected (kubectl get jm shows "
                "SelectedByAlertmanager) and is this the Alertmanager that selects it? "
                "Nothing was sent: the alerts would have gone to its default receiver"
            )
        return version

    def _by_receiver(self, samples: list[Sample]) -> bool:
        """Whether the counters name receivers (0.27+ with receiver-name-in-metrics)."""
        named = {s.labels.get(RECEIVER_NAME) for s in samples if s.name == REQUESTS}
        return all(self.full_name(r) in named for r in self.receivers)

    def run(self, drill: Plan) -> list[Outcome]:
        """Send every alert of ``drill``, batch after batch, then resolve them all."""
        samples = self.api.counters(COUNTERS)
        by_receiver = self._by_receiver(samples)

        def counted_as(receiver: str) -> set[tuple[str, str]]:
            who = self.full_name(receiver) if by_receiver else ""
            return {(who, kind) for kind in integrations(self.receivers[receiver])}

        deadline = self.clock() + self.timeout
        sent: list[Obj] = []
        outcomes: list[Outcome] = []
        try:
            for batch in batches(drill.alerts, counted_as):
                outcomes += self._batch(batch, by_receiver, sent, deadline)
        finally:
            self._resolve(sent)
        return outcomes + list(drill.unreachable)

    def _alert_body(self, alert: DrillAlert, starts: datetime.datetime) -> Obj:
        ends = starts + datetime.timedelta(seconds=self.timeout + 60)
        return {
            "labels": {**alert.labels, RUN_LABEL: self.run_id},
            "annotations": {
                "summary": f"Fire drill of {self.namespace}/{self.name}: not an incident",
                "description": (
                    "Sent by `jewelry-monitoring fire-drill` to check that "
                    f"{', '.join(alert.receivers)} receive notifications ({alert.key}). "
                    "It resolves at the end of the drill."
                ),
            },
            "startsAt": starts.isoformat(),
            "endsAt": ends.isoformat(),
        }

    def _batch(
        self, batch: list[DrillAlert], by_receiver: bool, sent: list[Obj], deadline: float
    ) -> list[Outcome]:
        before = _totals(self.api.counters(COUNTERS), by_receiver)
        bodies = [self._alert_body(a, datetime.datetime.now(datetime.UTC)) for a in batch]
        self.api.post_alerts(bodies)
        sent += bodies
        started = self.clock()
        watches = [
            _Watch(alert, receiver, integrations(self.receivers[receiver]))
            for alert in batch
            for receiver in alert.receivers
        ]
        for watch in watches:
            if not watch.integrations:
                watch.outcome = Outcome(
                    watch.receiver, watch.alert.key, DISCARDS, "no integration: it discards"
                )
        while any(w.outcome is None for w in watches):
            self.sleep(self.poll)
            now = self.clock()
            routed = {
                a["labels"].get("job", ""): a
                for a in self.api.alerts([f'{RUN_LABEL}="{self.run_id}"'])
            }
            after = _totals(self.api.counters(COUNTERS), by_receiver)
            for watch in (w for w in watches if w.outcome is None):
                seen = routed.get(watch.alert.labels.get("job", ""))
                watch.outcome = self._judge(
                    watch, seen, before, after, by_receiver, now - started, now >= deadline
                )
        return [w.outcome for w in watches if w.outcome is not None]

    def _judge(
        self,
        watch: _Watch,
        seen: Obj | None,
        before: dict[tuple[str, str, str], float],
        after: dict[tuple[str, str, str], float],
        by_receiver: bool,
        elapsed: float,
        out_of_time: bool,
    ) -> Outcome | None:
        """The verdict on one (alert, receiver) pair, or None while it is still open."""
        full = self.full_name(watch.receiver)

        def verdict(what: str, detail: str) -> Outcome:
            return Outcome(watch.receiver, watch.alert.key, what, detail, watch.integrations)

        if seen is not None:
            routed_to = [r.get("name", "") for r in seen.get("receivers") or []]
            if routed_to and full not in routed_to:
                return verdict(
                    NOT_ROUTED, f"Alertmanager routed it to {', '.join(routed_to)} instead"
                )
            state = seen.get("status") or {}
            if state.get("state") == "suppressed":
                silences = [f"silence {s}" for s in state.get("silencedBy") or []]
                sources = [f"inhibited by alert {a}" for a in state.get("inhibitedBy") or []]
                why = ", ".join([*silences, *sources])
                return verdict(SUPPRESSED, f"held back by Alertmanager: {why}")

        def delta(counter: str, integration: str) -> float:
            key = (counter, full if by_receiver else "", integration)
            return after.get(key, 0.0) - before.get(key, 0.0)

        done, failing, gave_up = [], [], []
        for integration in watch.integrations:
            attempts = delta(REQUESTS, integration)
            failures = delta(REQUESTS_FAILED, integration)
            if attempts - failures >= 1:
                done.append(integration)
            elif failures >= 1:
                failing.append(f"{integration}: {failures:.0f} failed requests")
                if delta(GAVE_UP, integration) >= 1:
                    gave_up.append(integration)
        if len(done) == len(watch.integrations):
            return verdict(SENT, f"notified through {', '.join(done)}")
        if not out_of_time and elapsed < watch.alert.group_wait + self.grace:
            return None
        if failing:
            partly = f"; sent through {', '.join(done)}" if done else ""
            ending = "Alertmanager gave up" if gave_up else f"none succeeded in {elapsed:.0f}s"
            return verdict(FAILED, f"{'; '.join(failing)}, {ending}{partly} (its log says why)")
        listed = "" if seen else "; Alertmanager does not list the alert"
        return verdict(NO_ATTEMPT, f"no notification request in {elapsed:.0f}s{listed}")
        return None

    def _resolve(self, sent: list[Obj]) -> None:
        """Resolve every alert sent: the same labels, ending now."""
        if not sent:
            return
        now = datetime.datetime.now(datetime.UTC).isoformat()
        self.api.post_alerts([{**body, "endsAt": now} for body in sent])

    def still_active(self) -> list[Obj]:
        """The drill's alerts Alertmanager still has active (none once resolved)."""
        return self.api.alerts([f'{RUN_LABEL}="{self.run_id}"'])


def selecting_alertmanager(kube: Kube, cr: Obj) -> Obj | None:
    """The Alertmanager resource that selects the resource's AlertmanagerConfig, if any."""
    meta = cr["metadata"]
    if not (
        kube.crd_established(MONITORING_KINDS["AlertmanagerConfig"])
        and kube.crd_established(ALERTMANAGER.crd)
    ):
        return None
    configs = kube.list("AlertmanagerConfig", meta["namespace"], owner_selector(meta["name"]))
    alertmanagers = kube.list("Alertmanager") if configs else []
    labels = {
        ns["metadata"]["name"]: ns["metadata"].get("labels", {})
        for ns in (kube.list("Namespace") if alertmanagers else [])
    }
    for alertmanager in sorted(
        alertmanagers, key=lambda a: (a["metadata"]["namespace"], a["metadata"]["name"])
    ):
        if evaluate([alertmanager], configs, labels, ALERTMANAGER).status == "True":
            return alertmanager
    return None


@dataclass(frozen=True)
class Report:
    """A drill of one resource: where it went and what each receiver did."""

    resource: str
    alertmanager: str
    url: str
    version: str
    sent: bool
    outcomes: list[Outcome]
    still_active: int = 0

    def header(self) -> str:
        what = "sent, then resolved" if self.sent else "planned; nothing sent (--yes sends it)"
        left = f"; {self.still_active} still active" if self.still_active else ""
        return (
            f"fire drill of {self.resource} through Alertmanager {self.alertmanager} at "
            f"{self.url} (version {self.version}): {what}{left}"
        )


def drill(kube: Kube, cr: Obj, url: str | None, send: bool, timeout: float) -> Report:
    """Plan (and with ``send``, run) the fire drill of ``cr``; DrillError when it cannot."""
    meta = cr["metadata"]
    resource = f"{meta['namespace']}/{meta['name']}"
    try:
        spec = JewelryMonitoringSpec.model_validate(cr.get("spec") or {})
    except ValueError as error:
        raise DrillError(f"{resource}: invalid spec: {error}") from None
    if spec.routing is None:
        raise DrillError(f"{resource} has no spec.routing: none of its alerts is routed")
    alertmanager = selecting_alertmanager(kube, cr)
    where = (
        f"{alertmanager['metadata']['namespace']}/{alertmanager['metadata']['name']}"
        if alertmanager
        else "(none selects its AlertmanagerConfig)"
    )
    if url is None:
        namespace = alertmanager["metadata"]["namespace"] if alertmanager else "<its namespace>"
        raise DrillError(
            f"the drill needs the Alertmanager's HTTP API: kubectl -n {namespace} port-forward "
            "svc/alertmanager-operated 9093, then add --alertmanager-url http://127.0.0.1:9093"
        )
    fire_drill = FireDrill(
        AlertmanagerAPI(url), meta["namespace"], meta["name"], spec.routing, timeout=timeout
    )
    version = fire_drill.loaded()
    the_plan = plan(spec.routing, meta["namespace"], meta["name"])
    if not send:
        return Report(resource, where, url, version, False, planned(the_plan, spec.routing))
    outcomes = fire_drill.run(the_plan)
    left = len(fire_drill.still_active())
    return Report(resource, where, url, version, True, outcomes, left)


MARKS = {SENT: "[sent]", DISCARDS: "[ok]  ", PLANNED: "[plan]"}


def human(outcomes: list[Outcome]) -> str:
    lines = []
    for outcome in outcomes:
        mark = MARKS.get(outcome.verdict, "[FAIL]")
        via = f" ({', '.join(outcome.integrations)})" if outcome.integrations else ""
        what = f"{outcome.alert}: " if outcome.alert else ""
        lines.append(f"{mark} {outcome.receiver}{via}: {outcome.verdict}: {what}{outcome.detail}")
    return "\n".join(lines) + "\n"


def as_json(report: Report) -> str:
    return json.dumps(asdict(report), indent=2) + "\n"


def exit_code(report: Report) -> int:
    return 0 if all(o.passed for o in report.outcomes) and not report.still_active else 1


__all__ = ["AlertmanagerError", "DrillError", "FireDrill", "Report", "drill"]
