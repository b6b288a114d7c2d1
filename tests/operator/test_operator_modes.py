"""Operator behaviour that needs a control plane of its own: missing prometheus-operator CRDs,
namespace-restricted watching, and leader election between replicas."""

from __future__ import annotations

import datetime
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import ControlPlane
from devkit.crs import GROUP, PLURAL, VERSION, CustomApi, condition, cr_body, wait_condition
from devkit.kubetools import apply_crds, wait_for
from devkit.manifests import chart_crd_files
from devkit.operator_process import (
    OperatorProcess,
    audit_position,
    install_rbac,
    render_chart,
    start_operator,
)
from devkit.replicas import (
    LEASE_TIMINGS,
    OPERATOR_USER,
    Replicas,
    writers_in_order,
    writes_by_pod,
)
from devkit.toolchain import prometheus_operator_crds
from jewelry_monitoring.builders.desired import CHILD_KINDS
from jewelry_monitoring.kube import RESOURCES

pytestmark = pytest.mark.cluster


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
    return start_operator(kubeconfig, log, OPERATOR_USER, args, env)


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
    apply_crds(api, chart_crd_files())
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

        # No polling for the CRDs (every resource every 15 s, forever, cost 66 requests a
        # second at 500 resources): the CRD watch re-queues every resource when one becomes
        # Established. Once the reconciles of our own writes are over, nothing happens.
        for _ in range(10):  # until 3 quiet seconds
            before = operator.reconciles()
            time.sleep(3)
            if operator.reconciles() == before:
                break
        before = operator.reconciles()
        time.sleep(20)
        assert operator.reconciles() == before

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


def test_reconcile_that_keeps_failing_says_so_in_status(
    own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path
) -> None:
    """A reconcile that raises (here: RBAC refuses reading the Secret its spec references)
    still ends in the status: Ready=False, reason=ReconcileError with the error, and recovers
    once the cause is gone."""
    plane, api = own_plane
    apply_crds(api, chart_crd_files())
    apply_crds(api, prometheus_operator_crds())
    operator = _start(plane, api, tmp_path / "operator.log")
    rbac = client.RbacAuthorizationV1Api(api)
    role = next(
        role
        for role in rbac.list_cluster_role().items
        if role.metadata.name.startswith("jm-jewelry-monitoring")
        and any("secrets" in (rule.resources or []) for rule in role.rules or [])
    )
    role_name = role.metadata.name
    granted = api.sanitize_for_serialization(role.rules)
    secrets_rule = next(r for r in granted if "secrets" in r["resources"])
    all_verbs = list(secrets_rule["verbs"])
    # No "get" (its watch still lists and watches): reading the Secret's key names raises 403.
    secrets_rule["verbs"] = [verb for verb in all_verbs if verb != "get"]
    rbac.patch_cluster_role(role_name, {"rules": granted})
    try:
        namespace = _namespace(api, "shop")
        client.CoreV1Api(api).create_namespaced_secret(
            namespace, {"metadata": {"name": "db"}, "stringData": {"dsn": "postgres://x"}}
        )
        spec = {
            "app": {"podSelector": {"app": "shop"}},
            "exporters": {
                "postgres": {"enabled": True, "dataSource": {"name": "db", "key": "dsn"}}
            },
        }
        CustomApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, cr_body("shop", spec)
        )
        cr = wait_condition(api, namespace, "shop", "Ready", "False", "ReconcileError")
        message = condition(cr, "Ready")["message"]
        assert "403" in message and "secrets" in message, message

        def warnings() -> list[str]:
            events = client.CoreV1Api(api).list_namespaced_event(namespace).items
            return [e.reason for e in events if e.type == "Warning"]

        # The Event is recorded just after the status: wait for it, then there is just it.
        assert wait_for(warnings, 30, what="a Warning event") == ["ReconcileError"]
        with urllib.request.urlopen(f"http://127.0.0.1:{operator.liveness_port}/healthz") as reply:
            assert reply.status == 200  # failing is not stuck: no restart needed

        secrets_rule["verbs"] = all_verbs
        rbac.patch_cluster_role(role_name, {"rules": granted})
        wait_condition(api, namespace, "shop", "Ready", "True", timeout=90)
    finally:
        operator.stop()


def test_namespaced_operator_touches_only_its_namespaces(
    own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path
) -> None:
    plane, api = own_plane
    apply_crds(api, chart_crd_files())
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


def test_two_replicas_only_the_lease_holder_writes_across_handovers(
    own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path
) -> None:
    """Two (then three) replicas under the chart's RBAC, each with a token bound to its own Pod.

    The audit log must show one writer at a time: the first leader until it is stopped with
    SIGTERM (it releases the Lease: the standby takes over at once), then the second until it
    is killed with SIGKILL (nothing released: the third takes over when the Lease expires).
    """
    plane, api = own_plane
    replicas = Replicas(plane, api, tmp_path)
    lease_name, start = replicas.lease_name, replicas.start
    namespace = _namespace(api, "shop")
    try:
        start("jm-a")
        start("jm-b")
        _create_cr(api, namespace, "first")
        wait_condition(api, namespace, "first", "Ready", "True")
        # Events reach both replicas; a label change and a resync (10 s) follow.
        CustomApi(api).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "first", {"metadata": {"labels": {"touch": "1"}}}
        )
        time.sleep(12)
        children = [w for w in writes_by_pod(plane.audit_log) if w.resource != "leases"]
        writers = {w.pod for w in children}
        assert len(writers) == 1, children
        first = writers.pop()
        assert replicas.holder() == first

        # SIGTERM: the leader drains and releases; the standby takes over without waiting.
        second = "jm-b" if first == "jm-a" else "jm-a"
        replicas.running[first].stop()
        stopped = time.monotonic()
        wait_for(lambda: replicas.holder() == second, timeout=30, what="handover")
        handover = time.monotonic() - stopped
        last_of_first = [w for w in writes_by_pod(plane.audit_log) if w.pod == first][-1]
        assert last_of_first.what == f"update leases/{lease_name}"  # the release
        _create_cr(api, namespace, "second")
        wait_condition(api, namespace, "second", "Ready", "True")

        # SIGKILL: nothing is released; the new standby waits until the Lease expires.
        start("jm-c")
        time.sleep(3)  # jm-c has observed the leader's renewals
        replicas.running[second].kill()
        killed = time.monotonic()
        wait_for(lambda: replicas.holder() == "jm-c", timeout=60, what="takeover")
        takeover = time.monotonic() - killed
        _create_cr(api, namespace, "third")
        wait_condition(api, namespace, "third", "Ready", "True")

        writes = writes_by_pod(plane.audit_log)
        children = [w for w in writes if w.resource != "leases"]
        assert writers_in_order(children) == [first, second, "jm-c"], writers_in_order(children)
        lease = client.CoordinationV1Api(api).read_namespaced_lease(lease_name, "jm-system")
        assert lease.spec.lease_transitions == 2
        # A killed leader's Lease is taken only once expired: at least lease - renew deadline
        # after the kill (its last renewal was at most that long before).
        expiry = LEASE_TIMINGS["leaseDurationSeconds"] - LEASE_TIMINGS["renewDeadlineSeconds"]
        assert takeover >= expiry, takeover
        for pod in writers_in_order(children):
            own = [w.what for w in writes if w.pod == pod]
            print(f"{pod}: {len(own)} writes, first {own[0]!r}, last {own[-1]!r}")
        print(
            f"writers in order: {writers_in_order(children)}; {len(children)} writes; "
            "handover after "
            f"SIGTERM {handover:.1f}s, takeover after SIGKILL {takeover:.1f}s "
            f"(lease {LEASE_TIMINGS['leaseDurationSeconds']}s)"
        )
        _assert_lease_rbac_is_what_was_used(plane.audit_log, replicas.values, lease_name)
    finally:
        replicas.stop()


def test_a_leader_that_loses_its_lease_stops_writing_until_it_leads_again(
    own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path
) -> None:
    """The Lease is taken from a running leader (as after a partition): it stops writing at
    its next renewal and reconciles nothing, though events keep coming, until it leads again;
    then it catches up on what it saw meanwhile."""
    plane, api = own_plane
    replicas = Replicas(plane, api, tmp_path)
    leases = client.CoordinationV1Api(api)
    namespace = _namespace(api, "shop")
    try:
        leader = replicas.start("jm-a")
        wait_for(lambda: replicas.holder() == "jm-a", timeout=60)
        _create_cr(api, namespace, "first")
        wait_condition(api, namespace, "first", "Ready", "True")
        assert "jewelry_monitoring_leader 1.0" in leader.metrics()

        now = datetime.datetime.now(datetime.UTC)
        stolen = {"holderIdentity": "intruder", "renewTime": now, "leaseDurationSeconds": 60}
        leases.patch_namespaced_lease(replicas.lease_name, "jm-system", {"spec": stolen})
        wait_for(lambda: "lost lease" in leader.logs(), timeout=30, what="the loss noticed")
        assert "jewelry_monitoring_leader 0.0" in leader.metrics()
        since = audit_position(plane.audit_log)
        _enable_redis_exporter(api, namespace, "first")
        time.sleep(5)
        assert writes_by_pod(plane.audit_log, since) == []  # not even a Lease update
        assert _deployments(api, namespace) == []

        leases.patch_namespaced_lease(
            replicas.lease_name, "jm-system", {"spec": {"holderIdentity": ""}}
        )
        wait_for(
            lambda: _deployments(api, namespace) == ["first-redis-exporter"],
            timeout=30,
            what="the catch-up",
        )
        assert "jewelry_monitoring_leader 1.0" in leader.metrics()
    finally:
        replicas.stop()


def _enable_redis_exporter(api: client.ApiClient, namespace: str, name: str) -> None:
    spec = {"exporters": {"redis": {"enabled": True}}}
    CustomApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": spec}
    )


def _deployments(api: client.ApiClient, namespace: str) -> list[str]:
    items = client.AppsV1Api(api).list_namespaced_deployment(namespace).items
    return [d.metadata.name for d in items]


def _assert_lease_rbac_is_what_was_used(
    audit_log: Path, values: dict[str, Any], lease_name: str
) -> None:
    """The leader-election Role grants exactly the Lease requests the replicas made."""
    used = set()
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef", {})
        user = entry.get("user", {}).get("username")
        if user != OPERATOR_USER or ref.get("resource") != "leases":
            continue
        assert ref["namespace"] == "jm-system"
        used.add((entry["verb"], ref.get("name") if entry["verb"] != "create" else None))
    (role,) = [o for o in render_chart("jm", "jm-system", values) if o["kind"] == "Role"]
    granted = {
        (verb, name)
        for rule in role["rules"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames", [None])
    }
    assert used == granted == {("create", None), ("get", lease_name), ("update", lease_name)}


def test_chart_rbac_grants_only_what_the_operator_uses(
    control_plane: ControlPlane,
    operator: OperatorProcess,
    admin_api: client.ApiClient,
    namespace: str,
) -> None:
    """Every rule the chart grants is used by the operator, and it uses nothing else.

    Drives one lifecycle that needs each permission (create with Secrets, a Prometheus and an
    Alertmanager present, then disable parts so they are pruned), then compares the chart's
    rules with the operator ServiceAccount's requests in the audit log. Peering rules are off
    by default.
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
    alertmanager = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Alertmanager",
        "metadata": {"name": "rbac-probe"},
        "spec": {"alertmanagerConfigSelector": {}},
    }
    custom.create_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "alertmanagers", alertmanager
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
                "routing": None,
            }
        },
    )
    wait_condition(admin_api, namespace, "rbac", "Ready", "True")
    for plural in ("prometheuses", "alertmanagers"):
        custom.delete_namespaced_custom_object(
            "monitoring.coreos.com", "v1", namespace, plural, "rbac-probe"
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
    # "create" is authorised for server-side apply of a new object, but recorded as "patch";
    # "update" on finalizers is checked by OwnerReferencesPermissionEnforcement when a child
    # sets blockOwnerDeletion (tests/operator/test_owner_references.py), never requested.
    # "get" of the resource and of each child kind: the reconcile reads them from its watches
    # and asks the API server only when they cannot tell (a name taken by an object they do
    # not show, a child changed by someone else, a resource not delivered yet), which this
    # scenario never meets (tests/operator/test_field_ownership.py meets them).
    authorised_not_requested = {
        ("monitoring.jewelry.io", "jewelrymonitorings/finalizers", "update"),
        ("monitoring.jewelry.io", "jewelrymonitorings", "get"),
        *(
            (RESOURCES[kind].api_version.rpartition("/")[0], RESOURCES[kind].plural, "get")
            for kind in CHILD_KINDS
        ),
    }
    unused = {g for g in granted - used - authorised_not_requested if g[2] != "create"}
    assert unused == set(), f"RBAC grants more than the operator used: {sorted(unused)}"
    assert used - granted == set()
