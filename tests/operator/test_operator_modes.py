"""Operator behaviour that needs a control plane of its own: missing prometheus-operator CRDs,
namespace-restricted watching, and two peering replicas."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import ControlPlane
from devkit.crs import GROUP, PLURAL, VERSION, CustomApi, condition, cr_body, wait_condition
from devkit.kubetools import api_client, apply_crds, wait_for
from devkit.operator_process import (
    CHART,
    OperatorProcess,
    audit_position,
    install_rbac,
    start_operator,
)
from devkit.toolchain import prometheus_operator_crds

pytestmark = pytest.mark.cluster

SA_USER = "system:serviceaccount:jm-system:jm-jewelry-monitoring"


@pytest.fixture
def own_plane(tmp_path: Path) -> Iterator[tuple[ControlPlane, client.ApiClient]]:
    plane = ControlPlane.create(tmp_path).start()
    try:
        yield plane, api_client(plane.kubeconfig)
    finally:
        plane.stop()


def _namespace(api: client.ApiClient, name: str) -> str:
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    return name


def _create_cr(api: client.ApiClient, namespace: str, name: str) -> None:
    CustomApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body(name, {"app": {"podSelector": {"app": "shop"}}})
    )


def _start(
    plane: ControlPlane,
    api: client.ApiClient,
    log: Path,
    values: dict[str, Any] | None = None,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> OperatorProcess:
    kubeconfig = install_rbac(plane, api, "jm", "jm-system", values)
    return start_operator(kubeconfig, log, SA_USER, args, env)


def _monitoring_objects(api: client.ApiClient, namespace: str) -> set[str]:
    custom = CustomApi(api)
    found = set()
    for plural in ("servicemonitors", "prometheusrules"):
        listing = custom.list_namespaced_custom_object(
            "monitoring.coreos.com", "v1", namespace, plural
        )
        found |= {f"{plural}/{item['metadata']['name']}" for item in listing["items"]}
    return found


def test_missing_prometheus_operator_crds_degrade_then_recover(
    own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path
) -> None:
    plane, api = own_plane
    apply_crds(api, sorted((CHART / "crds").glob("*.yaml")))
    operator = _start(plane, api, tmp_path / "operator.log")
    try:
        namespace = _namespace(api, "shop")
        _create_cr(api, namespace, "shop")
        cr = wait_condition(
            api, namespace, "shop", "Degraded", "True", "PrometheusOperatorCRDsMissing"
        )
        assert "servicemonitors.monitoring.coreos.com" in condition(cr, "Degraded")["message"]
        assert condition(cr, "Ready")["status"] == "True"
        services = client.CoreV1Api(api).list_namespaced_service(namespace).items
        assert [s.metadata.name for s in services] == ["shop-app-metrics"]
        assert operator.alive()

        # In this mode each reconcile asks for another in 15 s. Events must not each add a
        # retry timer of their own (the reconcile rate grew with every event and resync).
        start = audit_position(plane.audit_log)
        touches = 5
        for touch in range(touches):
            CustomApi(api).patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                "shop",
                {"metadata": {"labels": {"t": str(touch)}}},
            )
            time.sleep(1)
        time.sleep(25)
        reconciles = _cr_reads(plane.audit_log, start, namespace, "shop")
        print(f"{reconciles} reconciles for {touches} touches in {touches + 25}s")
        assert touches <= reconciles <= touches + 2

        started = time.monotonic()
        apply_crds(api, prometheus_operator_crds())
        wait_condition(api, namespace, "shop", "Degraded", "False", "AsExpected", timeout=30)
        recovered = time.monotonic() - started
        assert _monitoring_objects(api, namespace) == {
            "servicemonitors/shop-app-metrics",
            "prometheusrules/shop-rules",
        }
        print(f"monitoring objects appeared {recovered:.1f}s after the CRDs were installed")
    finally:
        operator.stop()


def _cr_reads(audit_log: Path, start: int, namespace: str, name: str) -> int:
    """How many times the operator read the CR: once per reconcile."""
    count = 0
    for line in audit_log.read_text().splitlines()[start:]:
        entry = json.loads(line)
        ref = entry.get("objectRef", {})
        count += (
            entry.get("user", {}).get("username") == SA_USER
            and entry.get("stage") == "ResponseComplete"
            and entry.get("verb") == "get"
            and ref.get("resource") == "jewelrymonitorings"
            and ref.get("subresource") is None
            and (ref.get("namespace"), ref.get("name")) == (namespace, name)
        )
    return count


def test_reconcile_that_keeps_failing_says_so_in_status(
    own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path
) -> None:
    """A reconcile that raises (here: RBAC refuses reading CRDs) still ends in the status:
    Ready=False, reason=ReconcileError with the error, and recovers once the cause is gone."""
    plane, api = own_plane
    apply_crds(api, sorted((CHART / "crds").glob("*.yaml")))
    apply_crds(api, prometheus_operator_crds())
    operator = _start(plane, api, tmp_path / "operator.log")
    rbac = client.RbacAuthorizationV1Api(api)
    role_name = "jm-jewelry-monitoring-cluster"
    role = rbac.read_cluster_role(role_name)
    granted = api.sanitize_for_serialization(role.rules)
    crd_rule = next(r for r in granted if "customresourcedefinitions" in r["resources"])
    crd_rule["verbs"] = ["list", "watch"]  # no "get": every reconcile now raises a 403
    rbac.patch_cluster_role(role_name, {"rules": granted})
    try:
        namespace = _namespace(api, "shop")
        _create_cr(api, namespace, "shop")
        cr = wait_condition(api, namespace, "shop", "Ready", "False", "ReconcileError")
        message = condition(cr, "Ready")["message"]
        assert "403" in message and "customresourcedefinitions" in message, message
        events = client.CoreV1Api(api).list_namespaced_event(namespace).items
        assert [e.reason for e in events if e.type == "Warning"] == ["ReconcileError"]
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.liveness_port}/healthz") as reply:
            assert reply.status == 200  # failing is not stuck: no restart needed

        crd_rule["verbs"] = ["get", "list", "watch"]
        rbac.patch_cluster_role(role_name, {"rules": granted})
        wait_condition(api, namespace, "shop", "Ready", "True", timeout=90)
    finally:
        operator.stop()


def test_namespaced_operator_touches_only_its_namespaces(
    own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path
) -> None:
    plane, api = own_plane
    apply_crds(api, sorted((CHART / "crds").glob("*.yaml")))
    apply_crds(api, prometheus_operator_crds())
    watched, other = _namespace(api, "watched"), _namespace(api, "other")
    operator = _start(
        plane,
        api,
        tmp_path / "operator.log",
        values={"watchNamespaces": [watched]},
        env={"JM_NAMESPACES": watched},
    )
    try:
        _create_cr(api, watched, "shop")
        _create_cr(api, other, "shop")
        wait_condition(api, watched, "shop", "Ready", "True")
        time.sleep(3)
        untouched = CustomApi(api).get_namespaced_custom_object(
            GROUP, VERSION, other, PLURAL, "shop"
        )
        assert "status" not in untouched
        assert _monitoring_objects(api, other) == set()
        # Its RBAC would not even allow it: the chart bound the namespaced role in `watched` only.
        bindings = client.RbacAuthorizationV1Api(api).list_namespaced_role_binding(other).items
        assert bindings == []
    finally:
        operator.stop()


def test_two_peering_replicas_only_one_acts(
    own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path
) -> None:
    plane, api = own_plane
    apply_crds(api, sorted((CHART / "crds").glob("*.yaml")))
    apply_crds(api, prometheus_operator_crds())
    values = {"replicas": 2}
    kubeconfig = install_rbac(plane, api, "jm", "jm-system", values)
    from devkit.operator_process import apply_objects, render_chart

    peering = [
        o for o in render_chart("jm", "jm-system", values) if o["kind"] == "ClusterKopfPeering"
    ]
    apply_objects(api, peering)
    peering_env = {"JM_PEERING": peering[0]["metadata"]["name"]}
    high = start_operator(
        kubeconfig, tmp_path / "high.log", SA_USER, ("--priority", "200"), peering_env
    )
    low = start_operator(
        kubeconfig, tmp_path / "low.log", SA_USER, ("--priority", "100"), peering_env
    )
    try:
        # A peer starts paused and resumes only when no live peer outranks it.
        resumed = "Resuming operations after the pause"
        wait_for(lambda: resumed in high.logs(), timeout=30, what="the high-priority peer to act")
        namespace = _namespace(api, "shop")
        _create_cr(api, namespace, "first")
        wait_condition(api, namespace, "first", "Ready", "True")
        assert "reconciled shop/first" in high.logs()
        assert "reconciled shop/first" not in low.logs() and resumed not in low.logs()

        high.stop()  # a graceful exit leaves the peering: the standby takes over
        wait_for(lambda: resumed in low.logs(), timeout=60, what="the standby to resume")
        _create_cr(api, namespace, "second")
        wait_condition(api, namespace, "second", "Ready", "True", timeout=60)
        assert "reconciled shop/second" in low.logs()
    finally:
        high.stop()
        low.stop()


def test_chart_rbac_grants_only_what_the_operator_uses(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    admin_api: client.ApiClient,
    namespace: str,
) -> None:
    """Every rule the chart grants is used by the operator, and it uses nothing else.

    Drives one lifecycle that needs each permission (create with Secrets and a Prometheus
    present, then disable parts so they are pruned), then compares the chart's rules with the
    operator ServiceAccount's requests in the audit log. Peering rules are off by default.
    """
    from devkit.crs import full_spec, make_secrets
    from devkit.operator_process import render_chart

    custom = CustomApi(admin_api)
    prometheus = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": "rbac-probe"},
        "spec": {"serviceMonitorSelector": {}, "ruleSelector": {}},
    }
    custom.create_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "prometheuses", prometheus
    )
    make_secrets(admin_api, namespace)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("rbac", full_spec())
    )
    wait_condition(admin_api, namespace, "rbac", "Ready", "True")
    custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "rbac",
        {
            "spec": {
                "exporters": {"redis": {"enabled": False}},
                "dashboards": {"enabled": False},
            }
        },
    )
    wait_condition(admin_api, namespace, "rbac", "Ready", "True")
    custom.delete_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "prometheuses", "rbac-probe"
    )

    used: set[tuple[str, str, str]] = set()
    for line in control_plane.audit_log.read_text().splitlines():
        entry = json.loads(line)
        if entry.get("user", {}).get("username") != operator.user:
            continue
        ref = entry.get("objectRef", {})
        if not ref.get("resource"):
            continue  # discovery (/api, /version): granted to every authenticated user
        resource = ref.get("resource", "") + (
            f"/{ref['subresource']}" if ref.get("subresource") else ""
        )
        used.add((ref.get("apiGroup", ""), resource, entry["verb"]))
    granted = {
        (group, resource, verb)
        for role in render_chart("jm", "jm-system")
        if role["kind"] == "ClusterRole"
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    # "create" is authorised for server-side apply of a new object, but recorded as "patch".
    unused = {g for g in granted - used if g[2] != "create"}
    assert unused == set(), f"RBAC grants more than the operator used: {sorted(unused)}"
    assert used - granted == set()
