"""The resources and app endpoints kept from the watches (jewelry_monitoring.watched)."""

from __future__ import annotations

from typing import Any

from jewelry_monitoring.builders.common import OWNER_LABEL
from jewelry_monitoring.targets import SERVICE_NAME_LABEL
from jewelry_monitoring.watched import Endpoints, Resources


def _cr(version: str, ready: str) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "shop", "name": "jm", "resourceVersion": version},
        "spec": {"app": {"podSelector": {"app": "shop"}}},
        "status": {"ready": ready},
    }


def test_a_resource_is_the_latest_delivered_or_written() -> None:
    resources = Resources()
    assert resources.get("shop", "jm") is None
    resources.delivered(None, _cr("10", "listed"))
    assert resources.get("shop", "jm") == _cr("10", "listed")
    resources.written(_cr("12", "written by us"))  # the watch has not delivered it yet
    assert resources.get("shop", "jm") == _cr("12", "written by us")
    resources.written(_cr("11", "an older answer"))
    assert resources.get("shop", "jm") == _cr("12", "written by us")
    resources.delivered("MODIFIED", _cr("13", "someone else"))
    assert resources.get("shop", "jm") == _cr("13", "someone else")
    resources.delivered("DELETED", _cr("14", "gone"))
    assert resources.get("shop", "jm") is None
    resources.written(_cr("15", "late answer"))  # a write answered after the deletion
    assert resources.get("shop", "jm") is None


def _slice(name: str, service: str, owner: str, *addresses: str) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "shop",
            "name": name,
            "labels": {SERVICE_NAME_LABEL: service, OWNER_LABEL: owner},
        },
        "ports": [{"name": "metrics", "port": 9100, "protocol": "TCP"}],
        "endpoints": [{"addresses": [address], "conditions": {}} for address in addresses],
    }


def _kept(service: str, *addresses: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {SERVICE_NAME_LABEL: service}},
        "ports": [{"name": "metrics", "port": 9100}],
        "endpoints": [{"addresses": [address]} for address in addresses],
    }


def test_endpoints_know_nothing_until_listed_then_follow_events() -> None:
    endpoints = Endpoints(["endpoints-all"])
    assert endpoints.of_owner("shop", "jm") is None  # not listed: ask the server
    owners = endpoints.listed(
        "endpoints-all",
        "",
        [
            _slice("a", "jm-app-metrics", "jm", "10.0.0.1", "10.0.0.2"),
            _slice("b", "jm-redis-exporter", "jm", "10.0.0.9"),
        ],
    )
    assert owners == {("shop", "jm")}
    assert endpoints.of_owner("shop", "jm") == [
        _kept("jm-app-metrics", "10.0.0.1", "10.0.0.2"),
        _kept("jm-redis-exporter", "10.0.0.9"),
    ]
    assert endpoints.of_owner("shop", "other") == []
    unchanged = _slice("a", "jm-app-metrics", "jm", "10.0.0.2", "10.0.0.1")
    assert endpoints.event("MODIFIED", unchanged) == set()  # same addresses: no reconcile
    other_port = {**unchanged, "ports": [{"name": "metrics", "port": 9200}]}
    assert endpoints.event("MODIFIED", other_port) == {("shop", "jm")}  # the checks read it
    assert endpoints.event("DELETED", unchanged) == {("shop", "jm")}
    assert endpoints.of_owner("shop", "jm") == [_kept("jm-redis-exporter", "10.0.0.9")]
    relabelled = _slice("b", "jm-redis-exporter", "other", "10.0.0.9")
    assert endpoints.event("MODIFIED", relabelled) == {("shop", "jm"), ("shop", "other")}
    assert endpoints.of_owner("shop", "jm") == []
    endpoints.event("ADDED", _slice("c", "jm-app-metrics", "jm", "10.0.0.3"))
    assert endpoints.listed("endpoints-all", "", []) == {("shop", "jm"), ("shop", "other")}
