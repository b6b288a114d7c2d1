"""Pure judgements behind AppTargetsFound, TargetsHealthy and doctor's fixes."""

from __future__ import annotations

from typing import Any

from jewelry_monitoring.selection import evaluate
from jewelry_monitoring.targets import (
    LISTED_TARGETS,
    app_targets_found,
    our_targets,
    scrape_pools,
    targets_healthy,
)

POOL = "serviceMonitor/shop/shop-app-metrics/0"


def _target(url: str, health: str, error: str = "", pool: str = POOL) -> dict[str, Any]:
    return {"scrapePool": pool, "scrapeUrl": url, "health": health, "lastError": error}


def test_endpoints_are_counted_once_per_pod_address() -> None:
    slices = [
        {"endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]},
        {"endpoints": [{"addresses": ["10.0.0.1"]}]},  # a second port set: same pod
    ]
    verdict = app_targets_found("s", "ns", {"app": "x"}, slices)
    assert (verdict.status, verdict.message) == ("True", "2 endpoints match app.podSelector app=x")
    empty = app_targets_found("s", "ns", {"tier": "web", "app": "x"}, [{"endpoints": None}])
    assert empty.status == "False" and "app.podSelector app=x,tier=web" in empty.message


def test_targets_of_other_pools_are_ignored_and_down_ones_named() -> None:
    monitor = {
        "kind": "ServiceMonitor",
        "metadata": {"name": "shop-app-metrics", "namespace": "shop"},
        "spec": {"endpoints": [{"port": "metrics"}]},
    }
    pools = scrape_pools([monitor, {"kind": "Service", "metadata": {}}])
    assert pools == [POOL]
    active = [
        _target("http://a/metrics", "up"),
        _target("http://b/metrics", "down", "server returned HTTP status 403 Forbidden"),
        _target("http://c/metrics", "down", "refused", pool="serviceMonitor/other/x/0"),
    ]
    verdict = targets_healthy("http://p", pools, our_targets(pools, active))
    assert verdict.status == "False" and verdict.reason == "TargetsDown"
    assert verdict.message == (
        f"1 of 2 targets down: http://b/metrics ({POOL}): server returned HTTP status 403 Forbidden"
    )


def test_many_down_targets_are_counted_not_listed() -> None:
    active = [_target(f"http://t{i}/metrics", "down", "refused") for i in range(LISTED_TARGETS + 3)]
    verdict = targets_healthy("http://p", [POOL], our_targets([POOL], active))
    assert verdict.message.endswith("; and 3 more")
    assert verdict.message.count("refused") == LISTED_TARGETS


def test_a_pool_without_targets_is_not_healthy() -> None:
    other = "serviceMonitor/shop/shop-redis-exporter/0"
    verdict = targets_healthy("http://p", [POOL, other], our_targets([POOL], [_target("u", "up")]))
    assert (verdict.status, verdict.reason) == ("False", "NoTargets")
    assert other in verdict.message


def test_selection_gives_the_labels_to_add() -> None:
    prometheus = {
        "metadata": {"namespace": "shop", "name": "k8s"},
        "spec": {
            "serviceMonitorSelector": {"matchLabels": {"release": "kps"}},
            "ruleSelector": {"matchLabels": {"release": "kps", "role": "rules"}},
        },
    }
    ours = [
        {"kind": kind, "metadata": {"name": "x", "namespace": "shop", "labels": {}}}
        for kind in ("ServiceMonitor", "PrometheusRule")
    ]
    selection = evaluate([prometheus], ours, {})
    assert selection.status == "False"
    assert selection.missing_labels == ("release=kps", "role=rules")
    # Labelled right but outside the namespace it watches: no label fix to offer.
    labelled = [
        {**obj, "metadata": {**obj["metadata"], "labels": {"release": "kps", "role": "rules"}}}
        for obj in ours
    ]
    elsewhere = {**prometheus, "metadata": {"namespace": "monitoring", "name": "k8s"}}
    outside = evaluate([elsewhere], labelled, {})
    assert (outside.status, outside.missing_labels) == ("False", ())
