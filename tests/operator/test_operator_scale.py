"""The operator's watches and requests depend on our objects, not on the cluster's size.

Read from the API server's audit log: what the operator asked for, as the server saw it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes import client

from devkit.crs import (
    GROUP,
    PLURAL,
    VERSION,
    CustomApi,
    cr_body,
    full_spec,
    make_secrets,
    wait_condition,
)
from devkit.kubetools import wait_for
from devkit.operator_process import OperatorProcess, audit_position, audit_requests
from jewelry_monitoring.builders.desired import CHILD_KINDS
from jewelry_monitoring.kube import RESOURCES

pytestmark = pytest.mark.cluster

OWNER_LABEL = "monitoring.jewelry.io/owner"
MONITORING = ("monitoring.coreos.com", "v1")
CLUSTER_WIDE_READS = ("customresourcedefinitions", "prometheuses", "alertmanagers", "namespaces")


def _label_selector(entry: dict[str, Any]) -> str:
    return parse_qs(urlsplit(entry["requestURI"]).query).get("labelSelector", [""])[0]


def test_child_lists_and_watches_carry_our_label_selector(
    admin_api: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    control_plane: Any,
) -> None:
    """kopf filters handlers by label on the client: without a server-side selector, its
    watches brought every Deployment, Service and ConfigMap of the cluster to the operator."""
    make_secrets(admin_api, namespace)
    CustomApi(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("scale", full_spec())
    )
    wait_condition(admin_api, namespace, "scale", "Ready", "True")
    child_plurals = {RESOURCES[kind].plural for kind in CHILD_KINDS}
    collection_reads = [
        entry
        for entry in audit_requests(control_plane.audit_log, operator.user)
        if entry["verb"] in ("list", "watch")
        and entry["objectRef"].get("resource") in child_plurals
    ]
    assert {e["objectRef"]["resource"] for e in collection_reads} == child_plurals
    unselected = [
        f"{e['verb']} {e['requestURI']}"
        for e in collection_reads
        if OWNER_LABEL not in _label_selector(e)
    ]
    assert unselected == []


def test_no_op_reconcile_reads_nothing_cluster_wide(
    admin_api: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    control_plane: Any,
) -> None:
    """CRDs, Prometheus resources and namespaces come from watches, not from a GET or a LIST
    in every reconcile."""
    CustomApi(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("noop", {"app": {"podSelector": {"a": "b"}}})
    )
    wait_condition(admin_api, namespace, "noop", "Ready", "True")
    time.sleep(2)  # the reconciles that our own writes caused
    start = audit_position(control_plane.audit_log)
    before = operator.reconciles_of(namespace, "noop")
    CustomApi(admin_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "noop", {"metadata": {"labels": {"touched": "1"}}}
    )
    wait_for(
        lambda: operator.reconciles_of(namespace, "noop") > before,
        30,
        what="a reconcile after the touch",
    )
    requests = audit_requests(control_plane.audit_log, operator.user, start)
    cluster_wide = [
        f"{e['verb']} {e['requestURI']}"
        for e in requests
        # GETs and LISTs: a watch that happens to be re-established in this window (every
        # ~270 s, whatever the reconciles do) is not a read of the reconcile.
        if e["objectRef"].get("resource") in CLUSTER_WIDE_READS and e["verb"] in ("get", "list")
    ]
    assert cluster_wide == []


def _reconcile_reads(
    admin_api: client.ApiClient,
    namespace: str,
    name: str,
    operator: OperatorProcess,
    control_plane: Any,
) -> list[dict[str, Any]]:
    """The GETs and LISTs of one reconcile that changes nothing: the operator's requests
    after touching the resource's labels, once its own writes have settled.

    Its writes are counted in its namespace only: the operator is shared, and a previous
    test's namespace may still be going away."""
    audit = control_plane.audit_log

    def operator_writes(since: int) -> list[dict[str, Any]]:
        return [
            e
            for e in audit_requests(audit, operator.user, since)
            if e["verb"] not in ("get", "list", "watch")
            and e["objectRef"].get("namespace") == namespace
        ]

    for _ in range(20):  # until a few quiet seconds: the reconciles our own writes caused
        start = audit_position(audit)
        time.sleep(3)
        if not operator_writes(start):
            break
    start = audit_position(audit)
    before = operator.reconciles_of(namespace, name)
    CustomApi(admin_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"labels": {"touched": "1"}}}
    )
    # A reconcile that reads everything from the watches leaves nothing in the audit log.
    wait_for(
        lambda: operator.reconciles_of(namespace, name) > before,
        30,
        what="a reconcile after the touch",
    )
    requests = audit_requests(audit, operator.user, start)
    assert operator_writes(start) == []
    return [e for e in requests if e["verb"] in ("get", "list")]


def test_no_op_reconcile_reads_none_of_its_children_nor_secrets(
    admin_api: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    control_plane: Any,
) -> None:
    """Its 23 children come from the label-selected watches: a reconcile that changes
    nothing neither LISTs a child kind (7 requests each time) nor GETs a child. Nor does it
    GET the 4 Secrets its spec references: their watch says they have not changed."""
    make_secrets(admin_api, namespace)
    CustomApi(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("quiet", full_spec())
    )
    wait_condition(admin_api, namespace, "quiet", "Ready", "True")
    reads = _reconcile_reads(admin_api, namespace, "quiet", operator, control_plane)
    child_plurals = {RESOURCES[kind].plural for kind in CHILD_KINDS}
    child_reads = [
        f"{e['verb']} {e['requestURI']}"
        for e in reads
        if e["objectRef"].get("resource") in child_plurals
    ]
    assert child_reads == []
    secret_reads = [e["requestURI"] for e in reads if e["objectRef"].get("resource") == "secrets"]
    assert secret_reads == []


def _prometheus(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": name},
        "spec": {
            "serviceMonitorSelector": {},
            "serviceMonitorNamespaceSelector": {},
            "ruleSelector": {},
            "ruleNamespaceSelector": {},
        },
    }


def test_prometheus_status_update_requeues_nothing_but_a_selector_change_does(
    admin_api: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    control_plane: Any,
    create_cr: Callable[..., dict[str, Any]],
) -> None:
    """prometheus-operator updates its Prometheus resources' status all the time; only a
    change of what they select can change our SelectedByPrometheus condition."""
    create_cr({"app": {"podSelector": {"a": "b"}}}, name="watcher")
    wait_condition(admin_api, namespace, "watcher", "Ready", "True")
    custom = CustomApi(admin_api)
    name = f"p-{uuid.uuid4().hex[:5]}"
    custom.create_namespaced_custom_object(
        *MONITORING, namespace, "prometheuses", _prometheus(name)
    )
    try:
        wait_condition(admin_api, namespace, "watcher", "SelectedByPrometheus", "True")
        for _ in range(10):  # until 3 quiet seconds: the reconciles of our own writes
            before = operator.reconciles_of(namespace, "watcher")
            time.sleep(3)
            if operator.reconciles_of(namespace, "watcher") == before:
                break
        custom.patch_namespaced_custom_object_status(
            *MONITORING,
            namespace,
            "prometheuses",
            name,
            {
                "status": {
                    "replicas": 1,
                    "availableReplicas": 1,
                    "paused": False,
                    "unavailableReplicas": 0,
                    "updatedReplicas": 1,
                }
            },
        )
        time.sleep(4)
        assert operator.reconciles_of(namespace, "watcher") == before, (
            "a status update re-queued resources"
        )

        custom.patch_namespaced_custom_object(
            *MONITORING,
            namespace,
            "prometheuses",
            name,
            {"spec": {"serviceMonitorSelector": {"matchLabels": {"release": "x"}}}},
        )
        wait_condition(admin_api, namespace, "watcher", "SelectedByPrometheus", "False")
    finally:
        custom.delete_namespaced_custom_object(*MONITORING, namespace, "prometheuses", name)
