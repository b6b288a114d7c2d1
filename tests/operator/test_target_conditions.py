"""AppTargetsFound and TargetsHealthy: the operator (chart RBAC) on the real control plane.

AppTargetsFound follows the app Service's EndpointSlices, made by the plane's own
EndpointSlice controller from pods that match (or stop matching) the pod selector.
TargetsHealthy reads a real local Prometheus scraping a real target that then goes down.
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
from devkit.crs import GROUP, PLURAL, VERSION, CustomApi, condition, cr_body, wait_condition
from devkit.operator_process import OperatorProcess, audit_position, audit_writes
from devkit.scrape_targets import fake_endpoints, metrics_target, prometheus_for

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


def test_targets_healthy_reads_prometheus_and_writes_only_on_change(
    operator: OperatorProcess,
    admin_api: client.ApiClient,
    control_plane: ControlPlane,
    namespace: str,
) -> None:
    spec: dict[str, Any] = {
        "app": {"podSelector": {"app": "shop"}, "interval": "1s", "scrapeTimeout": "1s"}
    }
    name = _create(admin_api, namespace, spec)
    cr = wait_condition(admin_api, namespace, name, "TargetsHealthy", "Unknown", "NoPrometheusURL")
    with metrics_target() as target:
        service = f"{name}-app-metrics"
        address = f"127.0.0.1:{target.port}"
        with prometheus_for(admin_api, namespace, name, {service: [address]}) as prometheus:
            CustomApi(admin_api).patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"spec": {"prometheus": {"url": prometheus.url, "checkInterval": "10s"}}},
            )
            cr = wait_condition(
                admin_api, namespace, name, "TargetsHealthy", "True", "TargetsUp", timeout=60
            )
            assert condition(cr, "TargetsHealthy")["message"] == "1 target up, none down"
            assert _printer_columns(admin_api, namespace, name)["Targets"] == "True"

            # Polls with an unchanged answer read, never write.
            time.sleep(3)  # the Event and status patch of the change above land first
            start = audit_position(control_plane.audit_log)
            time.sleep(25)  # more than two check intervals
            writes = [
                w for w in audit_writes(control_plane.audit_log, operator.user, start) if name in w
            ]
            assert writes == []
            reads = [
                entry
                for entry in map(
                    json.loads, control_plane.audit_log.read_text().splitlines()[start:]
                )
                if entry.get("user", {}).get("username") == operator.user
                and entry.get("stage") == "ResponseComplete"
                and entry.get("verb") in ("get", "list")
            ]
            print(f"API reads by the operator in 25 s of polls every 10 s: {len(reads)}")

            target.stop()  # the target goes down: only the next poll can notice
            cr = wait_condition(
                admin_api, namespace, name, "TargetsHealthy", "False", "TargetsDown", timeout=60
            )
            message = condition(cr, "TargetsHealthy")["message"]
            assert f"http://{address}/metrics" in message
            assert "connection refused" in message
            assert f"serviceMonitor/{namespace}/{service}/0" in message
            assert _printer_columns(admin_api, namespace, name)["Targets"] == "False"
            assert condition(cr, "Ready")["status"] == "True"


def _printer_columns(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The row ``kubectl get jm`` prints, by column name (the server's Table rendering)."""
    table = api.call_api(
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}",
        "GET",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    columns = [column["name"] for column in table["columnDefinitions"]]
    return dict(zip(columns, table["rows"][0]["cells"], strict=True))
