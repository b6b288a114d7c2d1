"""The fire drill's plan: which synthetic alert reaches which receiver of a resource's
routing, and in which batch. Pure: from the spec alone (``firedrill`` sends it).

One alert per route of ``spec.routing``, with the severity, team and alert name that route
matches and none that an earlier route would catch first, and one for the default receiver;
a route no alert can reach (an earlier one without ``continue`` catches all it matches) is
reported, not drilled. Alertmanager 0.25 counts notifications by integration only, so the
alerts go in batches in which no counter is moved twice (``batches``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from jewelry_monitoring.builders.routing import ROUTE_MATCHERS
from jewelry_monitoring.spec import (
    ALERT_OWNER_LABEL,
    RECEIVER_INTEGRATIONS,
    ReceiverSpec,
    RoutingSpec,
    duration_seconds,
)

Obj = dict[str, Any]
DRILL_ALERT = "JewelryFireDrill"
# Severities tried for an alert no route constrains, the least alarming first.
SEVERITIES = ("info", "warning", "critical")
# Alertmanager's name of each integration of our receivers (its metrics' ``integration``).
INTEGRATION_NAMES = {
    "slack": "slack",
    "email": "email",
    "pagerduty": "pagerduty",
    "webhook": "webhook",
    "msteams": "msteamsv2",
}
assert tuple(INTEGRATION_NAMES) == RECEIVER_INTEGRATIONS
# Verdicts, per receiver and drill alert.
SENT = "sent"
FAILED = "failed"
NOT_ROUTED = "not-routed"
SUPPRESSED = "suppressed"
NO_ATTEMPT = "no-attempt"
UNREACHABLE = "unreachable"
DISCARDS = "discards"
PLANNED = "planned"
PASSED = frozenset({SENT, DISCARDS, PLANNED})


@dataclass(frozen=True)
class DrillAlert:
    """One synthetic alert: its labels and the receivers the spec routes it to."""

    key: str  # "route 2 (pager)" or "default route"
    labels: dict[str, str]
    receivers: tuple[str, ...]
    group_wait: float  # seconds until Alertmanager sends a new group's first notification


@dataclass(frozen=True)
class Outcome:
    receiver: str
    alert: str  # DrillAlert.key, or "" when no alert reaches the receiver
    verdict: str
    detail: str
    integrations: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict in PASSED


@dataclass(frozen=True)
class Plan:
    alerts: tuple[DrillAlert, ...]
    unreachable: tuple[Outcome, ...]


def matched_routes(routing: RoutingSpec, labels: dict[str, str]) -> list[int]:
    """The routes of ``routing`` an alert with ``labels`` takes, as Alertmanager walks them:
    in order, stopping after the first match unless it has ``continue``."""
    matched = []
    for index, route in enumerate(routing.routes):
        if all(
            labels.get(label) in getattr(route, field)
            for field, label in ROUTE_MATCHERS.items()
            if getattr(route, field)
        ):
            matched.append(index)
            if not route.continue_:
                break
    return matched


def _candidates(alert_names: list[str], severities: list[str], teams: list[str]) -> list[Obj]:
    """Label sets to try, in order: each list's values, or defaults where it is empty."""
    return [
        {"alertname": name, "severity": severity, **({"team": team} if team else {})}
        for name in alert_names or [DRILL_ALERT]
        for severity in severities or SEVERITIES
        for team in teams or [""]
    ]


def integrations(receiver: ReceiverSpec) -> tuple[str, ...]:
    """Alertmanager's names of the integrations ``receiver`` notifies through."""
    return tuple(
        INTEGRATION_NAMES[name] for name in RECEIVER_INTEGRATIONS if getattr(receiver, name)
    )


def plan(routing: RoutingSpec, namespace: str, name: str) -> Plan:
    """One alert per route that some alert reaches first, and one for the default receiver."""
    alerts: list[DrillAlert] = []
    unreachable: list[Outcome] = []

    def group_wait(routes: list[int]) -> float:
        waits = [routing.routes[i].group_wait or routing.group_wait for i in routes]
        return max(duration_seconds(w) for w in waits or [routing.group_wait])

    def drill_alert(key: str, labels: Obj, routes: list[int]) -> DrillAlert:
        number = len(alerts) + 1
        unique = f"fire-drill-{number}"
        # ``job`` (and every other label inhibition compares, except the ones routes match
        # on) differs per drill alert: a drill critical never mutes a drill warning.
        extra = {
            label: unique
            for label in ["job", *routing.inhibition.equal]
            if label not in {*labels, "namespace", ALERT_OWNER_LABEL}
        }
        receivers = [routing.routes[i].receiver for i in routes] or [routing.receiver]
        return DrillAlert(
            key=key,
            labels={**labels, **extra, ALERT_OWNER_LABEL: name, "namespace": namespace},
            receivers=tuple(dict.fromkeys(receivers)),
            group_wait=group_wait(routes),
        )

    for index, route in enumerate(routing.routes):
        key = f"route {index + 1} ({route.receiver})"
        tried = [
            (labels, matched_routes(routing, labels))
            for labels in _candidates(route.alert_names, list(route.severities), route.teams)
        ]
        # Best an alert this route is the first to take; else one an earlier route passes
        # on to it (`continue`).
        reaching = [c for c in tried if c[1][:1] == [index]] or [c for c in tried if index in c[1]]
        if reaching:
            alerts.append(drill_alert(key, *reaching[0]))
        else:
            unreachable.append(
                Outcome(
                    route.receiver,
                    key,
                    UNREACHABLE,
                    "an earlier route without `continue` catches every alert this one "
                    "matches: reorder spec.routing.routes or narrow the earlier one",
                )
            )
    for labels in _candidates([], [], []):
        if not matched_routes(routing, labels):
            alerts.append(drill_alert("default route", labels, []))
            break
    else:
        unreachable.append(
            Outcome(
                routing.receiver,
                "default route",
                UNREACHABLE,
                "every drill alert matches a route, so none falls through to the default "
                "receiver (alerts with other labels still may)",
            )
        )
    return Plan(tuple(alerts), tuple(unreachable))


def batches(
    alerts: Iterable[DrillAlert], counted_as: Callable[[str], set[tuple[str, str]]]
) -> list[list[DrillAlert]]:
    """Alerts grouped so that no two in a batch move the same counter: ``counted_as`` gives
    the counter keys (receiver name, integration) a receiver's notifications move."""
    result: list[tuple[list[DrillAlert], set[tuple[str, str]]]] = []
    for alert in alerts:
        keys = {key for receiver in alert.receivers for key in counted_as(receiver)}
        for batch, used in result:
            if not keys & used:
                batch.append(alert)
                used |= keys
                break
        else:
            result.append(([alert], set(keys)))
    return [batch for batch, _ in result]


def planned(drill: Plan, routing: RoutingSpec) -> list[Outcome]:
    """The plan as outcomes: what would be sent where, nothing sent."""
    receivers = {receiver.name: receiver for receiver in routing.receivers}
    return [
        Outcome(
            receiver,
            alert.key,
            PLANNED,
            "would get "
            + ",".join(f'{k}="{v}"' for k, v in alert.labels.items() if k != "namespace"),
            integrations(receivers[receiver]),
        )
        for alert in drill.alerts
        for receiver in alert.receivers
    ] + list(drill.unreachable)
