"""Several operator replicas with leader election, told apart in the API server's audit log.

They run as the chart runs them (its RBAC, its leader election settings, here with short
timings so that a takeover takes seconds), each with a token bound to a Pod object of its
own name: the audit log then names the pod behind every request (``user.extra``), which is
how tests check that only one replica writes at a time.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from devkit.cluster import ControlPlane
from devkit.kubetools import apply_crds
from devkit.manifests import chart_crd_files
from devkit.operator_process import (
    WRITE_VERBS,
    OperatorProcess,
    install_rbac,
    render_chart,
    start_operator,
)
from devkit.toolchain import prometheus_operator_crds

# The chart's ServiceAccount, as the audit log names it (release "jm" in "jm-system").
OPERATOR_USER = "system:serviceaccount:jm-system:jm-jewelry-monitoring"
# Who made a request with a pod's bound service account token (audit event user.extra).
POD_NAME_KEY = "authentication.kubernetes.io/pod-name"
# Short leader election timings, so that takeovers take seconds: (lease, renew deadline, retry).
LEASE_TIMINGS = {"leaseDurationSeconds": 8, "renewDeadlineSeconds": 5, "retryPeriodSeconds": 1}


@dataclass(frozen=True)
class PodWrite:
    """One successful write of the operator's account, with the pod that made it and when
    the API server received it and answered it (the audit log's timestamps, microseconds)."""

    pod: str
    verb: str
    resource: str
    subresource: str
    namespace: str
    name: str
    received: datetime.datetime
    completed: datetime.datetime

    @property
    def what(self) -> str:
        """The write as "verb resource/subresource/name", for assertion messages."""
        parts = (self.resource, self.subresource, self.name)
        return f"{self.verb} {'/'.join(part for part in parts if part)}"


def writes_by_pod(audit_log: Path, since: int = 0) -> list[PodWrite]:
    """Every successful write of the operator's account after line ``since``, in the order
    the API server completed them."""
    writes = []
    for line in audit_log.read_text().splitlines()[since:]:
        entry = json.loads(line)
        user = entry.get("user", {})
        if user.get("username") != OPERATOR_USER or entry.get("stage") != "ResponseComplete":
            continue
        if entry.get("verb") not in WRITE_VERBS or entry["responseStatus"]["code"] >= 400:
            continue
        ref = entry["objectRef"]
        writes.append(
            PodWrite(
                pod=user["extra"][POD_NAME_KEY][0],
                verb=entry["verb"],
                resource=ref["resource"],
                subresource=ref.get("subresource", ""),
                namespace=ref.get("namespace", ""),
                name=ref.get("name", ""),
                received=datetime.datetime.fromisoformat(entry["requestReceivedTimestamp"]),
                completed=datetime.datetime.fromisoformat(entry["stageTimestamp"]),
            )
        )
    return writes


def writers_in_order(writes: list[PodWrite]) -> list[str]:
    """Who wrote, in order, consecutive repeats collapsed: [a, b] is a handover from a to b."""
    order: list[str] = []
    for write in writes:
        if not order or order[-1] != write.pod:
            order.append(write.pod)
    return order


def lease_holder(api: client.ApiClient, name: str, namespace: str = "jm-system") -> str:
    """The Lease's holder now; "" when released or not created yet."""
    try:
        lease = client.CoordinationV1Api(api).read_namespaced_lease(name, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return ""
        raise
    return str(lease.spec.holder_identity or "")


def _replica_pod(api: client.ApiClient, name: str, account: str) -> tuple[str, str]:
    """A Pod object standing for one replica, so that its token is bound to it as in a cluster.

    The scheduling gate keeps it Pending for good: the process runs here, not in a container.
    """
    pod = client.CoreV1Api(api).create_namespaced_pod(
        "jm-system",
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PodSpec(
                service_account_name=account,
                scheduling_gates=[client.V1PodSchedulingGate(name="jewelry.io/never")],
                containers=[client.V1Container(name="operator", image="jm-operator:test")],
            ),
        ),
    )
    return name, pod.metadata.uid


def _chart_env(values: dict[str, Any]) -> dict[str, str]:
    """The operator's environment as the chart's Deployment sets it (literal values only)."""
    (deployment,) = [
        o for o in render_chart("jm", "jm-system", values) if o["kind"] == "Deployment"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


class Replicas:
    """Operator replicas as the chart runs them with leader election (short timings), each
    with a token bound to a Pod object of its own name, so the audit log tells them apart.

    Installs our CRD and prometheus-operator's, and the chart's RBAC, on ``plane``."""

    def __init__(self, plane: ControlPlane, api: client.ApiClient, workdir: Path) -> None:
        apply_crds(api, chart_crd_files())
        apply_crds(api, prometheus_operator_crds())
        self.plane, self.api, self.workdir = plane, api, workdir
        self.values = {"replicas": 2, "leaderElection": LEASE_TIMINGS}
        # The chart's leader election settings; ports and log level as start_operator sets.
        self.env = {
            name: value
            for name, value in _chart_env(self.values).items()
            if name not in ("JM_LIVENESS_PORT", "JM_METRICS_PORT", "JM_LOG_LEVEL")
        } | {"POD_NAMESPACE": "jm-system", "JM_RESYNC_SECONDS": "10"}
        self.lease_name = self.env["JM_LEASE_NAME"]
        chart = render_chart("jm", "jm-system", self.values)
        self.account = next(o for o in chart if o["kind"] == "ServiceAccount")["metadata"]["name"]
        install_rbac(plane, api, "jm", "jm-system", self.values)
        self.running: dict[str, OperatorProcess] = {}

    def start(self, name: str, env: dict[str, str] | None = None) -> OperatorProcess:
        """Start replica ``name`` (its Pod object too); ``env`` adds to the chart's."""
        pod = _replica_pod(self.api, name, self.account)
        kubeconfig = install_rbac(self.plane, self.api, "jm", "jm-system", self.values, pod=pod)
        self.running[name] = start_operator(
            kubeconfig,
            self.workdir / f"{name}.log",
            OPERATOR_USER,
            env=self.env | {"POD_NAME": name} | (env or {}),
        )
        return self.running[name]

    def holder(self) -> str:
        """Which replica holds the Lease now ("" if none)."""
        return lease_holder(self.api, self.lease_name)

    def stop(self) -> None:
        for replica in self.running.values():
            replica.stop()
