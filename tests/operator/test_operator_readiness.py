"""Readiness apart from liveness: /readyz (metrics port) says whether the operator's watches
have listed and it leads or stands by; /healthz (kopf's) only whether it is alive."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubernetes import client

from devkit.cluster import ControlPlane
from devkit.kubetools import apply_crds
from devkit.manifests import chart_crd_files
from devkit.operator_process import OperatorProcess, install_rbac, start_operator
from devkit.replicas import OPERATOR_USER, Replicas

pytestmark = pytest.mark.cluster

CLUSTER_ROLE = "jm-jewelry-monitoring-cluster"


def answer(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode().strip()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode().strip()


def readiness(operator: OperatorProcess) -> tuple[int, str]:
    return answer(f"http://127.0.0.1:{operator.metrics_port}/readyz")


def liveness(operator: OperatorProcess) -> int:
    return answer(f"http://127.0.0.1:{operator.liveness_port}/healthz")[0]


def wait_ready(operator: OperatorProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while readiness(operator)[0] != 200:
        assert time.monotonic() < deadline, f"not ready: {readiness(operator)}"
        time.sleep(0.2)


def test_not_ready_until_every_watch_has_listed_though_alive(
    own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path
) -> None:
    """Without the permission to list namespaces, one watch never lists: the operator is
    alive but not ready, and says why; granted again, it lists and becomes ready."""
    plane, api = own_plane
    apply_crds(api, chart_crd_files())
    kubeconfig = install_rbac(plane, api, "jm", "jm-system")
    rbac = client.RbacAuthorizationV1Api(api)

    def rules(chosen: list[client.V1PolicyRule]) -> list[object]:
        return [api.sanitize_for_serialization(rule) for rule in chosen]

    granted = rbac.read_cluster_role(CLUSTER_ROLE)
    withheld = [rule for rule in granted.rules if "namespaces" not in rule.resources]
    rbac.patch_cluster_role(CLUSTER_ROLE, {"rules": rules(withheld)})
    operator = start_operator(kubeconfig, tmp_path / "operator.log", OPERATOR_USER)
    try:
        for _ in range(10):  # 3 s: the namespaces' watch fails and retries meanwhile
            status, reason = readiness(operator)
            assert (status, liveness(operator)) == (503, 200), reason
            assert "namespaces not listed yet" in reason
            time.sleep(0.3)
        rbac.patch_cluster_role(CLUSTER_ROLE, {"rules": rules(granted.rules)})
        wait_ready(operator, timeout=30)  # the watch's backoff after 2 failures: 4 s
        assert readiness(operator) == (200, "ready")
        assert liveness(operator) == 200
        assert "jewelry_monitoring_leader 1.0" in operator.metrics()  # /metrics still served
    finally:
        operator.stop()


def test_leader_and_standby_are_both_ready(
    own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path
) -> None:
    """Readiness means "leading or standing by": a standby is ready, so a rolling update
    of several replicas waits only for the new replica's watches, never for the Lease."""
    plane, api = own_plane
    replicas = Replicas(plane, api, tmp_path)
    try:
        first, second = replicas.start("jm-a"), replicas.start("jm-b")
        deadline = time.monotonic() + 30
        while not replicas.holder():
            assert time.monotonic() < deadline, "nobody took the Lease"
            time.sleep(0.2)
        for replica in (first, second):
            wait_ready(replica, timeout=30)
        leading = [r for r in (first, second) if "jewelry_monitoring_leader 1.0" in r.metrics()]
        assert len(leading) == 1
    finally:
        replicas.stop()
