"""AppTargetsFound: the operator (chart RBAC) on the real control plane.

AppTargetsFound follows the app Service's EndpointSlices, made by the plane's own
EndpointSlice controller from pods that match (or stop matching) the pod selector.
TargetsHealthy and the other checks that read a real Prometheus (which needs the chart to
allow its URL) are in tests/monitoring/test_operator_asks_prometheus.py.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from devkit.cluster import ControlPlane
from devkit.crs import (
    GROUP,
    PLURAL,
    VERSION,
    CustomApi,
    condition,
    cr_body,
    wait_condition,
)
from devkit.operator_process import OperatorProcess
from devkit.scrape_targets import fake_endpoints

pytestmark = pytest.mark.cluster


def _create(api: client.ApiClient, namespace: str, spec: dict[str, Any]) -> str:
    name = f"shop-{uuid.uuid4().hex[:5]}"
    CustomApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body(name, spec)
    )
    return name


def test_app_targets_found_follows_pods_matching_the_selector(
    operator: OperatorProcess,
    admin_api: client.ApiClient,
    control_plane: ControlPlane,
    namespace: str,
) -> None:
    selector = {"app": "jewelry-shop", "tier": "web"}
    name = _create(admin_api, namespace, {"app": {"podSelector": selector}})
    cr = wait_condition(admin_api, namespace, name, "AppTargetsFound", "False", "NoEndpoints")
    message = condition(cr, "AppTargetsFound")["message"]
    assert "app=jewelry-shop,tier=web" in message and f"{name}-app-metrics" in message
    assert condition(cr, "Ready")["status"] == "True"  # our objects are applied all the same

    with fake_endpoints(admin_api, namespace) as pods:
        # A pod with only one of the labels is no endpoint.
        pods.add_pod({"app": "jewelry-shop"}, "10.244.7.10")
        first = pods.add_pod(selector, "10.244.7.11")
        second = pods.add_pod(selector, "10.244.7.12")
        # No resync within the test's time (300 s): only the EndpointSlice watch brings it.
        cr = wait_condition(admin_api, namespace, name, "AppTargetsFound", "True")
        deadline = time.monotonic() + 30
        while "2 endpoints" not in condition(cr, "AppTargetsFound")["message"]:
            assert time.monotonic() < deadline, condition(cr, "AppTargetsFound")
            time.sleep(0.5)
            cr = wait_condition(admin_api, namespace, name, "AppTargetsFound", "True")
        pods.remove_pod(first)
        pods.remove_pod(second)
        cr = wait_condition(admin_api, namespace, name, "AppTargetsFound", "False", "NoEndpoints")
        assert condition(cr, "Ready")["status"] == "True"
    # The operator watches only slices with our labels: the selector goes to the server.
    watches = {
        entry["requestURI"]
        for entry in map(json.loads, control_plane.audit_log.read_text().splitlines())
        if entry.get("user", {}).get("username") == operator.user
        and entry.get("verb") == "watch"
        and entry.get("objectRef", {}).get("resource") == "endpointslices"
    }
    assert watches
    selectors = {parse_qs(urlsplit(uri).query).get("labelSelector", [""])[0] for uri in watches}
    assert selectors == {
        "app.kubernetes.io/managed-by=jewelry-monitoring-operator,monitoring.jewelry.io/owner"
    }, watches
