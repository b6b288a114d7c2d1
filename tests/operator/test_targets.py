"""Pure judgements behind AppTargetsFound, TargetsHealthy and doctor's fixes."""

from __future__ import annotations

from typing import Any

from jewelry_monitoring.selection import evaluate
from jewelry_monitoring.targets import (
    LISTED_TARGETS,
    EndpointState,
    app_targets_found,
    endpoint_states,
    our_endpoints,
    scrape_pools,
    targets_healthy,
)

POOL = "serviceMonitor/shop/shop-app-metrics/0"
SERVICE_LABELS = {"app.kubernetes.io/name": "jm", "app.kubernetes.io/instance": "shop"}
OBJECTS: list[dict[str, Any]] = [
    {"kind": "Service", "metadata": {"name": "shop-app-metrics", "labels": SERVICE_LABELS}},
    {"kind": "Service", "metadata": {"name": "other", "labels": {"x": "y"}}},
    {
        "kind": "ServiceMonitor",
        "metadata": {"name": "shop-app-metrics", "namespace": "shop"},
        "spec": {"selector": {"matchLabels": SERVICE_LABELS}, "endpoints": [{"port": "metrics"}]},
    },
]


def _slice(service: str, ips: list[str], port: int | None, name: str = "metrics") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"kubernetes.io/service-name": service}},
        "ports": [] if port is None else [{"name": name, "port": port}],
        "endpoints": [{"addresses": [ip]} for ip in ips],
    }


def _active(address: str, health: str, error: str = "", pool: str = POOL) -> dict[str, Any]:
    return {
        "scrapePool": pool,
        "discoveredLabels": {"__address__": address},
        "scrapeUrl": f"http://{address}/metrics",
        "health": health,
        "lastError": error,
    }


def _dropped(address: str, port_name: str = "metrics") -> dict[str, Any]:
    return {
        "discoveredLabels": {
            "__address__": address,
            "__meta_kubernetes_service_name": "shop-app-metrics",
            "__meta_kubernetes_endpointslice_port_name": port_name,
        }
    }


def _states(slices: list[dict[str, Any]], answer: dict[str, Any], why: str = "") -> list[str]:
    endpoints = our_endpoints(OBJECTS, slices)
    return [s.line for s in endpoint_states(endpoints, [POOL], {POOL: answer}, why)]


def test_endpoints_are_counted_once_per_pod_address() -> None:
    slices = [
        {"endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}]},
        {"endpoints": [{"addresses": ["10.0.0.1"]}]},  # a second port set: same pod
    ]
    verdict = app_targets_found("s", "ns", {"app": "x"}, slices)
    assert (verdict.status, verdict.message) == ("True", "2 endpoints match app.podSelector app=x")
    empty = app_targets_found("s", "ns", {"tier": "web", "app": "x"}, [{"endpoints": None}])
    assert empty.status == "False" and "app.podSelector app=x,tier=web" in empty.message


def test_each_endpoint_of_our_services_is_found_in_its_pool() -> None:
    slices = [
        _slice("shop-app-metrics", ["10.0.0.1", "10.0.0.2"], 8000),
        _slice("shop-app-metrics", ["fd00::3"], 8001),
        _slice("shop-app-metrics", ["10.0.0.4"], None),  # the pod has no such port
        _slice("other", ["10.0.0.9"], 8000),
    ]
    endpoints = our_endpoints(OBJECTS, slices)
    assert [(e.pool, e.address, e.has_port) for e in endpoints] == [
        (POOL, "10.0.0.1:8000", True),
        (POOL, "10.0.0.2:8000", True),
        (POOL, "10.0.0.4", False),
        (POOL, "[fd00::3]:8001", True),
    ]
    assert scrape_pools(OBJECTS) == [POOL]


def test_each_endpoint_gets_the_first_reason_that_applies() -> None:
    slices = [
        _slice("shop-app-metrics", [f"10.0.0.{i}" for i in range(1, 7)], 8000),
        _slice("shop-app-metrics", ["10.0.0.9"], None),
    ]
    answer = {
        "activeTargets": [
            _active("10.0.0.1:8000", "up"),
            _active("10.0.0.2:8000", "down", "server returned HTTP status 403 Forbidden"),
            _active("10.0.0.3:8000", "unknown"),
            _active("10.0.0.8:8000", "up", pool="serviceMonitor/other/x/0"),
        ],
        "droppedTargets": [_dropped("10.0.0.4:8000"), _dropped("10.0.0.5:8000", "web")],
    }
    lines = _states(slices, answer)
    assert lines == [
        f"10.0.0.2:8000 ({POOL}): failing: refused (403): the endpoint does not allow "
        "Prometheus' address (server returned HTTP status 403 Forbidden)",
        f"10.0.0.6:8000 ({POOL}): not discovered: Prometheus does not discover this endpoint "
        "(yet): its service discovery lags, or it does not watch this namespace",
        f"10.0.0.9 ({POOL}): not discovered: Service shop-app-metrics has no port 'metrics' on "
        "this pod: the pod has no container port the Service's targetPort names",
        f"10.0.0.4:8000 ({POOL}): dropped: a relabeling drops it (app.relabelings, or the "
        "ServiceMonitor's own): compare its discovered labels with them in Prometheus' "
        "Targets page (Show dropped)",
        f"10.0.0.5:8000 ({POOL}): dropped: its port is named 'web', the ServiceMonitor "
        "scrapes 'metrics'",
        f"10.0.0.3:8000 ({POOL}): not scraped yet",
        f"10.0.0.1:8000 ({POOL}): up",
    ]


def test_a_pool_prometheus_does_not_know_is_not_discovered_with_the_selection_reason() -> None:
    slices = [_slice("shop-app-metrics", ["10.0.0.1"], 8000)]
    why = "namespace shop is outside its serviceMonitorNamespaceSelector"
    assert _states(slices, {}, why) == [f"10.0.0.1:8000 ({POOL}): not discovered: {why}"]
    # What Prometheus answers for a pool it does not have.
    nothing: dict[str, Any] = {"activeTargets": [], "droppedTargets": []}
    assert _states(slices, nothing, why) == [f"10.0.0.1:8000 ({POOL}): not discovered: {why}"]
    endpoints = our_endpoints(OBJECTS, slices)
    verdict = targets_healthy("http://p", [POOL], endpoint_states(endpoints, [POOL], {}, why))
    assert (verdict.status, verdict.reason) == ("False", "TargetsNotDiscovered")


def test_targets_without_a_slice_count_as_prometheus_reports_them() -> None:
    """A static configuration (or a slice not listed yet): the active target counts."""
    states = endpoint_states([], [POOL], {POOL: {"activeTargets": [_active("h:1", "up")]}})
    verdict = targets_healthy("http://p", [POOL], states)
    assert (verdict.status, verdict.message) == ("True", "1 target up, none down")
    none = targets_healthy("http://p", [POOL], [])
    assert (none.status, none.reason) == ("False", "NoTargets")


def test_a_failing_target_outranks_the_others_and_many_are_counted_not_listed() -> None:
    states = [EndpointState(POOL, f"10.0.0.{i}:80", "dropped", "r") for i in range(3)] + [
        EndpointState(POOL, f"10.0.1.{i}:80", "failing", "refused") for i in range(LISTED_TARGETS)
    ]
    verdict = targets_healthy("http://p", [POOL], states)
    assert verdict.reason == "TargetsDown"
    assert verdict.message.startswith(
        f"{LISTED_TARGETS} failing, 3 dropped of 8: 10.0.1.0:80 ({POOL}): failing: refused; "
    )
    assert verdict.message.endswith("; and 3 more (jewelry-monitoring doctor lists all)")


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
