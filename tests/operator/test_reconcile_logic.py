"""Pure parts of reconciliation: drift detection, condition merging, Prometheus selection."""

from __future__ import annotations

from typing import Any

import pytest

from jewelry_monitoring.config import ConfigError, load
from jewelry_monitoring.leader import claimed_spec, released_spec
from jewelry_monitoring.reconcile import is_subset, up_to_date
from jewelry_monitoring.selection import evaluate, matches
from jewelry_monitoring.status import Condition, merge_conditions


def test_subset_ignores_server_added_fields_but_not_changed_ones() -> None:
    wanted = {"spec": {"ports": [{"name": "metrics", "port": 9187}]}}
    current = {"spec": {"ports": [{"name": "metrics", "port": 9187, "protocol": "TCP"}], "x": 1}}
    assert is_subset(wanted, current)
    assert not is_subset(wanted, {"spec": {"ports": [{"name": "metrics", "port": 80}]}})
    assert not is_subset(wanted, {"spec": {"ports": []}})
    assert not is_subset({"a": "1"}, {"a": 1})


def test_up_to_date_needs_the_same_hash() -> None:
    wanted = {"metadata": {"annotations": {"monitoring.jewelry.io/spec-hash": "new"}}, "spec": {}}
    stale = {"metadata": {"annotations": {"monitoring.jewelry.io/spec-hash": "old"}}, "spec": {}}
    assert not up_to_date(wanted, stale)
    assert up_to_date(
        wanted, {**stale, "metadata": {"annotations": {"monitoring.jewelry.io/spec-hash": "new"}}}
    )


def test_condition_timestamps_move_only_on_status_change() -> None:
    old = [Condition(type="Ready", status="True", reason="Reconciled", last_transition_time="t0")]
    same = [Condition(type="Ready", status="True", reason="Reconciled", message="again")]
    assert merge_conditions(old, same, "t1")[0].last_transition_time == "t0"
    flipped = [Condition(type="Ready", status="False", reason="InvalidSpec")]
    assert merge_conditions(old, flipped, "t1")[0].last_transition_time == "t1"


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (None, {"a": "b"}, False),
        ({}, {"a": "b"}, True),
        ({"matchLabels": {"release": "kps"}}, {"release": "kps", "x": "y"}, True),
        ({"matchLabels": {"release": "kps"}}, {"release": "other"}, False),
        (
            {"matchExpressions": [{"key": "t", "operator": "In", "values": ["a", "b"]}]},
            {"t": "b"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "t", "operator": "NotIn", "values": ["a"]}]},
            {"t": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "t", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "t", "operator": "DoesNotExist"}]}, {}, True),
    ],
)
def test_label_selector_semantics(selector: Any, labels: dict[str, str], expected: bool) -> None:
    assert matches(selector, labels) is expected


def _prometheus(namespace: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": "k8s"}, "spec": spec}


OURS = [
    {
        "kind": "ServiceMonitor",
        "metadata": {"name": "shop-app-metrics", "namespace": "shop", "labels": {"release": "kps"}},
    },
    {
        "kind": "PrometheusRule",
        "metadata": {"name": "shop-rules", "namespace": "shop", "labels": {"release": "kps"}},
    },
    {"kind": "Service", "metadata": {"name": "ignored", "namespace": "shop"}},
]


def test_selected_when_labels_and_namespaces_match() -> None:
    prometheus = _prometheus(
        "monitoring",
        serviceMonitorSelector={"matchLabels": {"release": "kps"}},
        serviceMonitorNamespaceSelector={},
        ruleSelector={"matchLabels": {"release": "kps"}},
        ruleNamespaceSelector={"matchLabels": {"team": "gems"}},
    )
    assert evaluate([prometheus], OURS, {"shop": {"team": "gems"}}).status == "True"
    outside = evaluate([prometheus], OURS, {"shop": {"team": "other"}})
    assert outside.status == "False"
    assert "namespace shop is outside its ruleNamespaceSelector" in outside.message


def test_unset_namespace_selector_means_own_namespace_only() -> None:
    prometheus = _prometheus("monitoring", serviceMonitorSelector={}, ruleSelector={})
    result = evaluate([prometheus], OURS, {})
    assert result.status == "False"
    assert "namespace shop is outside its serviceMonitorNamespaceSelector" in result.message
    assert (
        evaluate([_prometheus("shop", serviceMonitorSelector={}, ruleSelector={})], OURS, {}).status
        == "True"
    )


def test_missing_label_is_named_and_no_prometheus_is_unknown() -> None:
    prometheus = _prometheus(
        "monitoring",
        serviceMonitorSelector={"matchLabels": {"release": "prod"}},
        serviceMonitorNamespaceSelector={},
    )
    result = evaluate([prometheus], OURS, {})
    assert result.reason == "NotSelected"
    assert "add release=prod to spec.monitorLabels" in result.message
    assert "it has no ruleSelector, so it selects no PrometheusRule" in result.message
    assert evaluate([], OURS, {}).reason == "NoPrometheus"


def test_config_is_validated_once() -> None:
    config = load(env={"JM_NAMESPACES": "b, a", "POD_NAME": "jm-0", "JM_LIVENESS_PORT": "9090"})
    assert config.namespaces == ("a", "b") and not config.clusterwide
    assert config.liveness_endpoint == "http://0.0.0.0:9090/healthz"
    assert config.lease is None and config.metrics_port == 8081
    assert load(env={}).clusterwide
    with pytest.raises(ConfigError, match="JM_RESYNC_SECONDS must be an integer"):
        load(env={"JM_RESYNC_SECONDS": "soon"})
    # The resync is off unless asked for: an idle operator makes no requests.
    assert load(env={}).resync_seconds == 0
    assert load(env={"JM_RESYNC_SECONDS": "600"}).resync_seconds == 600
    with pytest.raises(ConfigError, match="0 \\(off\\) or at least 10"):
        load(env={"JM_RESYNC_SECONDS": "5"})
    with pytest.raises(ConfigError, match="JM_LOG_LEVEL"):
        load(env={"JM_LOG_LEVEL": "chatty"})
    with pytest.raises(ConfigError, match="both 8080"):
        load(env={"JM_METRICS_PORT": "8080"})


def test_leader_election_settings_are_validated() -> None:
    lease = load(
        env={"JM_LEADER_ELECTION": "true", "POD_NAMESPACE": "ops", "POD_NAME": "jm-7c9-x2"}
    ).lease
    assert lease is not None
    assert (lease.namespace, lease.name, lease.identity) == (
        "ops",
        "jewelry-monitoring-leader",
        "jm-7c9-x2",
    )
    assert (lease.lease_duration, lease.renew_deadline, lease.retry_period) == (15, 10, 2)
    # Without a pod name, two processes on one host still get distinct identities.
    no_pod = {"JM_LEADER_ELECTION": "true", "JM_LEASE_NAMESPACE": "ops"}
    assert load(env=no_pod).lease != load(env=no_pod).lease
    with pytest.raises(ConfigError, match="needs JM_LEASE_NAMESPACE"):
        load(env={"JM_LEADER_ELECTION": "true"})
    # A leader must stop writing before anyone else may take the Lease over.
    with pytest.raises(ConfigError, match="JM_RENEW_DEADLINE_SECONDS < JM_LEASE_DURATION"):
        load(env=no_pod | {"JM_RENEW_DEADLINE_SECONDS": "15"})


def test_lease_specs_follow_client_go() -> None:
    """Renewing keeps acquireTime and the transition count; taking over bumps the count."""
    held = claimed_spec({}, "a", 15, "t0")
    assert held == {
        "holderIdentity": "a",
        "leaseDurationSeconds": 15,
        "acquireTime": "t0",
        "renewTime": "t0",
        "leaseTransitions": 0,
    }
    renewed = claimed_spec(held, "a", 15, "t1")
    assert renewed["acquireTime"] == "t0" and renewed["renewTime"] == "t1"
    assert renewed["leaseTransitions"] == 0
    taken = claimed_spec(renewed, "b", 15, "t2")
    assert taken["acquireTime"] == "t2" and taken["leaseTransitions"] == 1
    released = released_spec(taken, "t3")
    assert released["holderIdentity"] == "" and released["leaseDurationSeconds"] == 1
    assert released["leaseTransitions"] == 1


def test_subset_compares_quantities_by_value_and_omitted_zero_values() -> None:
    """What the API server stores for what we apply is up to date: it rewrites quantities
    ("0.5" -> "500m", "1024Mi" -> "1Gi") and omits empty strings and false."""
    wanted = {"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}}}
    stored = {"resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}}
    assert is_subset(wanted, stored)
    assert not is_subset(wanted, {"resources": {"requests": {"cpu": "600m", "memory": "1Gi"}}})
    # Only resource amounts are quantities: elsewhere "0.5" and "500m" differ.
    assert not is_subset({"args": ["0.5"]}, {"args": ["500m"]})
    assert not is_subset({"value": "0.5"}, {"value": "500m"})
    toleration = {"tolerations": [{"key": "k", "operator": "Exists", "effect": ""}]}
    assert is_subset(toleration, {"tolerations": [{"key": "k", "operator": "Exists"}]})
    assert not is_subset({"a": "x"}, {})
