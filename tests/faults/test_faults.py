"""The operator under faults: killed mid-rollout, its API server and etcd restarted, its
watches expired by an etcd compaction, its children deleted and edited by hand under load,
and, with two replicas, its leader killed or stopped mid-rollout while a standby waits.

Each test runs on a control plane of its own (the faults would disturb other tests) and is
bounded in time. Sizes are small for CI; JM_FAULT_CRS sets the rollout size (100 for the
full check).
"""

from __future__ import annotations

import datetime
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
from devkit.kubetools import apply_crds, operator_kube, wait_for
from devkit.manifests import chart_crd_files
from devkit.operator_process import (
    OperatorProcess,
    audit_position,
    audit_requests,
    install_rbac,
    start_operator,
)
from devkit.replicas import (
    LEASE_TIMINGS,
    OPERATOR_USER,
    PodWrite,
    Replicas,
    writers_in_order,
    writes_by_pod,
)
from devkit.toolchain import prometheus_operator_crds
from jewelry_monitoring.builders.desired import CHILD_KINDS
from jewelry_monitoring.cli import render
from jewelry_monitoring.kube import REQUEST_TIMEOUT
from jewelry_monitoring.leader import JITTER
from jewelry_monitoring.reconcile import is_subset

ROLLOUT_CRS = int(os.environ.get("JM_FAULT_CRS", "20"))
# Bounds grow with the rollout: at 100 CRs on the shared 2-core machine, the control plane's
# start, the rollout and the final listing of every child took longer than 600 s in all.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(max(600, 30 * ROLLOUT_CRS))]
OWNER_LABEL = "monitoring.jewelry.io/owner"
MANAGED = "app.kubernetes.io/managed-by=jewelry-monitoring-operator"
CONVERGE_SECONDS = max(420.0, 6.0 * ROLLOUT_CRS)


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
            self.kubeconfig, self.log, OPERATOR_USER, env={"JM_LOG_LEVEL": "INFO"}
        )


@pytest.fixture
def faulty(own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path) -> Iterator[Faulty]:
    plane, api = own_plane
    apply_crds(api, [*chart_crd_files(), *prometheus_operator_crds()])
    kubeconfig = install_rbac(plane, api, "jm", "jm-system")
    log = tmp_path / "operator.log"
    handle = Faulty(plane, api, kubeconfig, log, start_operator(kubeconfig, log, OPERATOR_USER))
    try:
        yield handle
    finally:
        handle.operator.stop()


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
    kube = operator_kube(api)
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
    """Changes made while the operator's watches were behind, an API server restart, then a
    write and an etcd compaction: resuming from the old resourceVersion gets 410 Gone, so the
    operator must list again, and see every change it missed.

    The compaction comes after the restart, and after a write none of the operator's watches
    sees: while the operator is stopped its sockets still take in what the old API server
    sends (the deletion, a bookmark), so a compaction before the restart could be older than
    the version the operator then resumes from, and nothing would expire."""
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
        start = audit_position(faulty.plane.audit_log)
        faulty.plane.restart("kube-apiserver", timeout=240)
        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="unwatched"))
        )
        faulty.plane.compact_etcd()
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

    def relisted() -> bool:
        """The operator's Service watch, back after its reconnect backoff, found its version
        expired and listed again."""
        return any(
            e["verb"] == "list" and e.get("objectRef", {}).get("resource") == "services"
            for e in audit_requests(faulty.plane.audit_log, OPERATOR_USER, start)
        )

    wait_for(relisted, 60, what="a list of Services after the restart (the watch re-listed)")


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


# What a loaded machine (2 shared cores, a rollout's worth of events in both replicas) may
# add to a takeover beyond the election's own bounds: the standby's event loop and the API
# server answer late.
TAKEOVER_SLACK = 3.0
# One retry period of the election, with its jitter (jewelry_monitoring.leader.JITTER).
RETRY_PERIOD = LEASE_TIMINGS["retryPeriodSeconds"] * (1 + JITTER)


def _cr_of(write: PodWrite, owners: dict[str, str]) -> str | None:
    """The CR a write was for: its status or itself, one of its children (``owners``: child
    name -> CR name), or an Event about it (named "<CR>.<random>"); None for the Lease."""
    if write.resource == PLURAL:
        return write.name
    if write.resource == "events":
        return write.name.rpartition(".")[0]
    return owners.get(write.name)


def _writers_per_cr(
    api: client.ApiClient, namespace: str, writes: list[PodWrite]
) -> dict[str, list[str]]:
    """Per CR, who wrote its status, children and Events, in the order the API server
    received the writes, consecutive repeats collapsed ([a, b]: a, then b, never again a)."""
    owners = {
        child["metadata"]["name"]: child["metadata"]["ownerReferences"][0]["name"]
        for child in _children(api, namespace)
    }
    per_cr: dict[str, list[PodWrite]] = {}
    for write in writes:
        cr = _cr_of(write, owners)
        if cr is None:
            assert write.resource == "leases", f"a write to no CR's object: {write}"
        else:
            per_cr.setdefault(cr, []).append(write)
    return {
        cr: writers_in_order(sorted(crs_writes, key=lambda w: w.received))
        for cr, crs_writes in per_cr.items()
    }


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_killing_the_leader_under_load_hands_over_and_no_cr_has_two_writers_at_once(
    own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path, stop: signal.Signals
) -> None:
    """Two replicas with leader election; the leader is killed in the middle of a rollout.

    SIGKILL releases nothing: the standby takes the Lease once it has expired. SIGTERM drains
    the running reconciles and releases the Lease: the standby takes it within one retry
    period. Either way the audit log shows every write of the old leader before the first of
    the new one (its taking the Lease), so no CR ever had two writers at once; and the
    rollout ends exactly as desired.
    """
    plane, api = own_plane
    replicas = Replicas(plane, api, tmp_path)
    quiet = {"JM_LOG_LEVEL": "INFO"}
    lease, renew_deadline = (
        LEASE_TIMINGS["leaseDurationSeconds"],
        LEASE_TIMINGS["renewDeadlineSeconds"],
    )
    try:
        leader = replicas.start("jm-a", env=quiet)
        wait_for(lambda: replicas.holder() == "jm-a", 60, what="jm-a leading")
        replicas.start("jm-b", env=quiet)
        namespace = _namespace(api)
        names = [f"l-{index}" for index in range(ROLLOUT_CRS)]
        _create_crs(api, namespace, names)
        apps = client.AppsV1Api(api)
        wait_for(  # a quarter of the exporter Deployments (four per CR) exist
            lambda: (
                len(apps.list_namespaced_deployment(namespace, label_selector=MANAGED).items)
                >= ROLLOUT_CRS
            ),
            CONVERGE_SECONDS,
            what="the rollout under way",
        )
        crs = _crs(api, namespace)
        unsettled = [name for name in names if name not in crs or not _settled(crs[name])]
        stopped_at = datetime.datetime.now(datetime.UTC)
        leader.process.send_signal(stop)
        assert unsettled, "the rollout was over before the leader stopped: this proves nothing"
        wait_for(lambda: replicas.holder() == "jm-b", 60, interval=0.1, what="the takeover")
        leader.process.wait(timeout=60)
        if stop == signal.SIGTERM:
            assert leader.process.returncode == 0, leader.logs()[-4000:]  # a graceful exit
        _wait_all_ready(api, namespace, names)
        assert_exactly_the_desired_children(api, namespace)

        writes = writes_by_pod(plane.audit_log)
        old = [w for w in writes if w.pod == "jm-a"]
        new = [w for w in writes if w.pod == "jm-b"]
        taking = new[0]
        assert taking.what == f"update leases/{replicas.lease_name}", taking
        late = [w.what for w in old if w.completed >= taking.received]
        assert late == [], f"jm-a wrote after jm-b took the Lease: {late}"
        orders = _writers_per_cr(api, namespace, writes)
        assert set(orders) == set(names)
        one_then_other = (["jm-a"], ["jm-a", "jm-b"], ["jm-b"])
        interleaved = {cr: order for cr, order in orders.items() if order not in one_then_other}
        assert interleaved == {}, f"CRs written by both replicas in turn: {interleaved}"
        assert any("jm-b" in order for order in orders.values()), "jm-b took nothing over"

        takeover = (taking.received - stopped_at).total_seconds()
        if stop == signal.SIGKILL:
            # Taken only once expired: the last renewal was at most a renew deadline before
            # the kill, and the standby waits a lease duration from when it saw it.
            assert lease - renew_deadline <= takeover <= lease + RETRY_PERIOD + TAKEOVER_SLACK
        else:
            release = old[-1]
            assert release.what == f"update leases/{replicas.lease_name}", release
            after_release = [w.what for w in old[:-1] if w.completed >= release.received]
            assert after_release == [], f"jm-a wrote after releasing the Lease: {after_release}"
            # Released once drained (at most a renew deadline) and once the writes already
            # sent were answered (at most their timeout), then taken within a retry period.
            assert (taking.received - release.completed).total_seconds() <= (
                RETRY_PERIOD + TAKEOVER_SLACK
            )
            drained_and_answered = renew_deadline + sum(REQUEST_TIMEOUT)
            assert takeover <= drained_and_answered + RETRY_PERIOD + TAKEOVER_SLACK
        print(
            f"{signal.Signals(stop).name} with {len(unsettled)}/{ROLLOUT_CRS} CRs unsettled: "
            f"jm-b took the Lease {takeover:.1f}s later (lease {lease}s, renew deadline "
            f"{renew_deadline}s); writes: jm-a {len(old)}, jm-b {len(new)}; "
            f"CRs written by jm-a only {sum(o == ['jm-a'] for o in orders.values())}, "
            f"by both in turn {sum(o == ['jm-a', 'jm-b'] for o in orders.values())}, "
            f"by jm-b only {sum(o == ['jm-b'] for o in orders.values())}"
        )
    finally:
        replicas.stop()
