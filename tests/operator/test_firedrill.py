"""The fire drill's plan (pure): which synthetic alert reaches which receiver, in which batch.

The drill itself (jewelry_monitoring.firedrill), against the real Alertmanager that
prometheus-operator configured from our AlertmanagerConfig, is in
tests/monitoring/test_alert_routing.py.
"""

from __future__ import annotations

from typing import Any

from jewelry_monitoring.drillplan import (
    DRILL_ALERT,
    UNREACHABLE,
    batches,
    integrations,
    matched_routes,
    plan,
)
from jewelry_monitoring.spec import RoutingSpec


def hook(name: str) -> dict[str, Any]:
    return {"name": name, "webhook": {"url": {"name": f"hook-{name}", "key": "url"}}}


def routing(routes: list[dict[str, Any]], **extra: Any) -> RoutingSpec:
    receivers = [
        hook("pager"),
        hook("tickets"),
        {"name": "chat", "slack": {"apiUrl": {"name": "slack", "key": "url"}}},
        hook("catchall"),
        {"name": "void"},
    ]
    return RoutingSpec.model_validate(
        {"receivers": receivers, "receiver": "catchall", "routes": routes, **extra}
    )


def test_one_alert_per_route_and_one_for_the_default_receiver_each_reaching_its_own() -> None:
    spec = routing(
        [
            {"receiver": "pager", "severities": ["critical"]},
            {"receiver": "tickets", "alertNames": ["RedisExporterDown"], "teams": ["shop"]},
            {"receiver": "chat", "teams": ["checkout"], "continue": True},
            {"receiver": "tickets", "severities": ["warning"]},
        ]
    )
    drill = plan(spec, "shop", "jewelry")
    assert not drill.unreachable
    by_key = {alert.key: alert for alert in drill.alerts}
    assert list(by_key) == [
        "route 1 (pager)",
        "route 2 (tickets)",
        "route 3 (chat)",
        "route 4 (tickets)",
        "default route",
    ]
    for alert in drill.alerts:
        # What the AlertmanagerConfig's own route matches (prometheus-operator adds namespace).
        assert alert.labels["jewelry_monitoring"] == "jewelry"
        assert alert.labels["namespace"] == "shop"
    assert by_key["route 1 (pager)"].labels["severity"] == "critical"
    assert by_key["route 1 (pager)"].receivers == ("pager",)
    # Route 2 needs its alert name and team; its severity must not be caught by route 1.
    second = by_key["route 2 (tickets)"].labels
    assert (second["alertname"], second["team"], second["severity"]) == (
        "RedisExporterDown",
        "shop",
        "info",
    )
    # `continue`: the chat alert also reaches the next route that matches it.
    third = by_key["route 3 (chat)"]
    assert third.labels["team"] == "checkout"
    assert third.receivers == ("chat",)
    assert by_key["route 4 (tickets)"].labels["severity"] == "warning"
    default = by_key["default route"]
    assert default.receivers == ("catchall",)
    assert matched_routes(spec, default.labels) == []
    assert default.labels["alertname"] == DRILL_ALERT
    # Every drill alert differs in job: a drill critical cannot inhibit a drill warning.
    assert len({alert.labels["job"] for alert in drill.alerts}) == len(drill.alerts)


def test_a_continue_route_sends_its_alert_to_every_matching_receiver() -> None:
    spec = routing(
        [
            {"receiver": "chat", "severities": ["warning"], "continue": True},
            {"receiver": "tickets", "severities": ["warning", "critical"]},
        ]
    )
    by_key = {alert.key: alert for alert in plan(spec, "shop", "jewelry").alerts}
    assert by_key["route 1 (chat)"].receivers == ("chat", "tickets")
    # Route 2's alert must avoid route 1 or it would be route 1's: critical, not warning.
    assert by_key["route 2 (tickets)"].labels["severity"] == "critical"
    assert by_key["route 2 (tickets)"].receivers == ("tickets",)


def test_a_shadowed_route_and_an_unreachable_default_are_reported_not_drilled() -> None:
    spec = routing(
        [
            {"receiver": "pager", "severities": ["info", "warning", "critical"]},
            {"receiver": "tickets", "severities": ["critical"]},
        ]
    )
    drill = plan(spec, "shop", "jewelry")
    assert [alert.key for alert in drill.alerts] == ["route 1 (pager)"]
    assert [(o.receiver, o.alert, o.verdict) for o in drill.unreachable] == [
        ("tickets", "route 2 (tickets)", UNREACHABLE),
        ("catchall", "default route", UNREACHABLE),
    ]
    assert "earlier route" in drill.unreachable[0].detail


def test_labels_inhibition_compares_differ_per_drill_alert() -> None:
    spec = routing(
        [{"receiver": "pager", "severities": ["critical"]}],
        inhibition={"equal": ["alertname", "namespace", "cluster"]},
    )
    alerts = plan(spec, "shop", "jewelry").alerts
    assert len({alert.labels["cluster"] for alert in alerts}) == len(alerts) == 2


def test_batches_never_share_a_counter() -> None:
    """Alertmanager 0.25 counts notifications by integration only: two webhook receivers
    must be drilled one after the other, a Slack one beside either."""
    spec = routing(
        [
            {"receiver": "pager", "severities": ["critical"]},
            {"receiver": "chat", "severities": ["warning"]},
            {"receiver": "void", "alertNames": ["QuietAlert"]},
        ]
    )
    receivers = {r.name: r for r in spec.receivers}
    alerts = plan(spec, "shop", "jewelry").alerts
    assert integrations(receivers["chat"]) == ("slack",)

    def by_integration(receiver: str) -> set[tuple[str, str]]:
        return {("", kind) for kind in integrations(receivers[receiver])}

    grouped = [[a.receivers for a in batch] for batch in batches(alerts, by_integration)]
    assert grouped == [[("pager",), ("chat",), ("void",)], [("catchall",)]]

    def by_receiver(receiver: str) -> set[tuple[str, str]]:
        return {(receiver, kind) for kind in integrations(receivers[receiver])}

    # With receiver names in the counters (0.27+), everything goes at once.
    assert len(batches(alerts, by_receiver)) == 1
