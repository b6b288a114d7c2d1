"""The operator under faults: killed mid-rollout, its API server and etcd restarted, its
watches expired by an etcd compaction, its children deleted and edited by hand under load.

Each test runs on a control plane of its own (the faults would disturb other tests) and is
bounded in time. Sizes are small for CI; JM_FAULT_CRS sets the rollout size (100 for the
full check).
"""

from __future__ import annotations

import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import ControlPlane
from devkit.crs import GROUP, PLURAL, VERSION, CustomApi, cr_body, full_spec, make_secrets
from devkit.kubetools import api_client, apply_crds, wait_for
from devkit.manifests import chart_crd_files
from devkit.operator_process import (
    OperatorProcess,
    audit_position,
    audit_requests,
    install_rbac,
    start_operator,
)
from devkit.toolchain import prometheus_operator_crds
from jewelry_monitoring.builders.desired import CHILD_KINDS
from jewelry_monitoring.cli import render
from jewelry_monitoring.kube import Kube
from jewelry_monitoring.reconcile import is_subset

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

ROLLOUT_CRS = int(os.environ.get("JM_FAULT_CRS", "20"))
OWNER_LABEL = "monitoring.jewelry.io/owner"
MANAGED = "app.kubernetes.io/managed-by=jewelry-monitoring-operator"
CONVERGE_SECONDS = 420.0
USER = "system:serviceaccount:jm-system:jm-jewelry-monitoring"


@dataclass
class Faulty:
    """A control plane of its own with the operator running on it."""

    plane: ControlPlane
    api: client.ApiClient
    kubeconfig: Path
    log: Path
    operator: OperatorProcess

    def restart_operator(self) -> None:
        self.operator = start_operator(
            self.kubeconfig, self.log, USER, env={"JM_LOG_LEVEL": "INFO"}
        )


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[Faulty]:
    plane = ControlPlane.create(tmp_path).start()
    handle = None
    try:
        api = api_client(plane.kubeconfig)
        apply_crds(api, [*chart_crd_files(), *prometheus_operator_crds()])
        kubeconfig = install_rbac(plane, api, "jm", "jm-system")
        log = tmp_path / "operator.log"
        handle = Faulty(plane, api, kubeconfig, log, start_operator(kubeconfig, log, USER))
        yield handle
    finally:
        if handle is not None:
            handle.operator.stop()
        plane.stop()


def _namespace(api: client.ApiClient) -> str:
    name = f"f-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
    )
    make_secrets(api, name)
    return name


def _create_crs(api: client.ApiClient, namespace: str, names: list[str]) -> None:
    custom = CustomApi(api)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda name: custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, cr_body(name, full_spec())
                ),
                names,
            )
        )


def _crs(api: client.ApiClient, namespace: str) -> dict[str, dict[str, Any]]:
    listing = CustomApi(api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    return {item["metadata"]["name"]: item for item in listing["items"]}


def _settled(cr: dict[str, Any]) -> bool:
    """Ready=True for the current generation."""
    status = cr.get("status") or {}
    ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
    generation = cr["metadata"].get("generation")
    return (
        bool(ready)
        and ready[0]["status"] == "True"
        and status.get("observedGeneration") == generation
        and ready[0].get("observedGeneration") == generation
    )


def _wait_all_ready(api: client.ApiClient, namespace: str, names: list[str]) -> None:
    def unsettled() -> list[str]:
        crs = _crs(api, namespace)
        return [n for n in names if n not in crs or not _settled(crs[n])]

    wait_for(lambda: not unsettled(), CONVERGE_SECONDS, interval=1.0, what="every CR Ready")


def _children(api: client.ApiClient, namespace: str) -> list[dict[str, Any]]:
    """Every object of a child kind in ``namespace`` labelled as managed by the operator, as
    the API server returns it (read with the operator's own client module)."""
    kube = Kube(api)
    return [obj for kind in CHILD_KINDS for obj in kube.list(kind, namespace, MANAGED)]


def _expected(namespace: str, cr: dict[str, Any]) -> list[dict[str, Any]]:
    body = {
        **cr_body(cr["metadata"]["name"], cr["spec"]),
        "metadata": {"name": cr["metadata"]["name"], "namespace": namespace},
    }
    return render(body, cr["metadata"]["uid"], with_prometheus_operator=True)


def assert_exactly_the_desired_children(api: client.ApiClient, namespace: str) -> None:
    """Every CR has each desired child once, as desired, owned by it; no child without a
    living owner; no stuck condition."""
    crs = _crs(api, namespace)
    for cr in crs.values():
        conditions = {c["type"]: c for c in cr["status"]["conditions"]}
        assert conditions["Ready"]["status"] == "True", cr["metadata"]["name"]
        assert conditions["Degraded"]["status"] == "False", conditions["Degraded"]
    children = _children(api, namespace)
    by_key = {(c["kind"], c["metadata"]["name"]): c for c in children}
    assert len(by_key) == len(children)
    owners = {cr["metadata"]["uid"] for cr in crs.values()}
    orphans = []
    for key, child in by_key.items():
        refs = [ref["uid"] for ref in child["metadata"].get("ownerReferences", [])]
        if len(refs) != 1 or refs[0] not in owners:
            orphans.append(key)
    assert orphans == []
    expected_keys = set()
    for cr in crs.values():
        for wanted in _expected(namespace, cr):
            key = (wanted["kind"], wanted["metadata"]["name"])
            expected_keys.add(key)
            assert key in by_key, f"{key} missing"
            assert is_subset(wanted, by_key[key]), f"{key} differs from what it should be"
    assert set(by_key) == expected_keys


def test_sigkill_at_random_moments_during_a_rollout_converges(faulty: Faulty) -> None:
    namespace = _namespace(faulty.api)
    names = [f"r-{index}" for index in range(ROLLOUT_CRS)]
    _create_crs(faulty.api, namespace, names)
    randomness = random.Random()
    kills = 0
    while kills < 4 and not all(_settled(cr) for cr in _crs(faulty.api, namespace).values()):
        time.sleep(randomness.uniform(0.5, 4.0))
        faulty.operator.kill()
        kills += 1
        faulty.restart_operator()
    assert kills >= 1, "the rollout ended before the first kill: the test proves nothing"
    _wait_all_ready(faulty.api, namespace, names)
    assert_exactly_the_desired_children(faulty.api, namespace)


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_restart_during_reconciliation_recovers_without_operator_restart(
    faulty: Faulty, component: str
) -> None:
    namespace = _namespace(faulty.api)
    names = [f"c-{index}" for index in range(10)]
    pid = faulty.operator.process.pid
    _create_crs(faulty.api, namespace, names)
    time.sleep(1)  # reconciles are under way
    faulty.plane.restart(component, down_seconds=3, timeout=240)
    _wait_all_ready(faulty.api, namespace, names)
    # The watches came back too: a CR created after the restart is reconciled.
    _create_crs(faulty.api, namespace, ["after"])
    _wait_all_ready(faulty.api, namespace, ["after"])
    assert faulty.operator.alive() and faulty.operator.process.pid == pid
    assert_exactly_the_desired_children(faulty.api, namespace)


def test_expired_watch_after_etcd_compaction_relists_and_misses_no_change(
    faulty: Faulty,
) -> None:
    """Changes made while the operator's watches were behind, then an etcd compaction and an
    API server restart: resuming from the old resourceVersion gets 410 Gone, so the operator
    must list again, and see every change it missed."""
    namespace = _namespace(faulty.api)
    _create_crs(faulty.api, namespace, ["shop"])
    _wait_all_ready(faulty.api, namespace, ["shop"])
    time.sleep(2)
    core = client.CoreV1Api(faulty.api)
    services = core.list_namespaced_service(namespace, label_selector=MANAGED).items
    os.kill(faulty.operator.process.pid, signal.SIGSTOP)
    try:
        core.delete_namespaced_service(services[0].metadata.name, namespace)
        CustomApi(faulty.api).patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            "shop",
            {"spec": {"monitorLabels": {"release": "changed-while-behind"}}},
        )
        faulty.plane.compact_etcd()
        start = audit_position(faulty.plane.audit_log)
        faulty.plane.restart("kube-apiserver", timeout=240)
    finally:
        os.kill(faulty.operator.process.pid, signal.SIGCONT)
    _wait_all_ready(faulty.api, namespace, ["shop"])
    wait_for(
        lambda: (
            core.list_namespaced_service(namespace, label_selector=MANAGED).items
            and len(core.list_namespaced_service(namespace, label_selector=MANAGED).items)
            == len(services)
        ),
        60,
        what="the Service deleted while the watch was behind restored",
    )
    assert_exactly_the_desired_children(faulty.api, namespace)
    relists = [
        e
        for e in audit_requests(faulty.plane.audit_log, USER, start)
        if e["verb"] == "list" and e["objectRef"].get("resource") == "services"
    ]
    assert relists, "no list of Services after the restart: the watch was not re-listed"


def test_children_deleted_and_edited_by_hand_under_load_are_restored(faulty: Faulty) -> None:
    namespace = _namespace(faulty.api)
    names = [f"h-{index}" for index in range(10)]
    _create_crs(faulty.api, namespace, names)
    core, apps = client.CoreV1Api(faulty.api), client.AppsV1Api(faulty.api)
    vandalised = 0
    deadline = time.monotonic() + 120
    while vandalised < 20 and time.monotonic() < deadline:  # while the rollout runs
        for service in core.list_namespaced_service(namespace, label_selector=MANAGED).items:
            core.delete_namespaced_service(service.metadata.name, namespace)
            vandalised += 1
            break
        for deployment in apps.list_namespaced_deployment(namespace, label_selector=MANAGED).items:
            apps.patch_namespaced_deployment(
                deployment.metadata.name,
                namespace,
                {
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": deployment.spec.template.spec.containers[0].name,
                                        "image": "edited:1",
                                    }
                                ]
                            }
                        }
                    }
                },
            )
            vandalised += 1
            break
        time.sleep(0.3)
    assert vandalised, "nothing to delete or edit: the test proves nothing"
    _wait_all_ready(faulty.api, namespace, names)

    def restored() -> bool:
        try:
            assert_exactly_the_desired_children(faulty.api, namespace)
        except AssertionError:
            return False
        return True

    wait_for(restored, 120, interval=2.0, what="every child restored as desired")
