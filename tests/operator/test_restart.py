"""A restart with everything up to date costs nothing (issue 19): the restarted operator
confirms each resource from its watches (the resource from kopf's, its children and their
field ownership from the label-selected ones, the app endpoints from theirs) and writes
nothing; the requests it makes for the resources' namespace are the few reads the watches
cannot answer (a Secret's keys, once per Secret)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from devkit.cluster import ControlPlane
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
from devkit.kubetools import apply_crds, wait_for
from devkit.manifests import chart_crd_files
from devkit.operator_process import (
    WRITE_VERBS,
    audit_position,
    audit_requests,
    install_rbac,
    start_operator,
)
from devkit.toolchain import prometheus_operator_crds

pytestmark = pytest.mark.cluster
USER = "system:serviceaccount:jm-system:jm-jewelry-monitoring"
CRS = 4
REQUESTS_PER_CR = 3


@pytest.fixture
def started(
    own_plane: tuple[ControlPlane, client.ApiClient], tmp_path: Path
) -> Iterator[tuple[ControlPlane, client.ApiClient, Path]]:
    plane, api = own_plane
    apply_crds(api, [*chart_crd_files(), *prometheus_operator_crds()])
    yield plane, api, install_rbac(plane, api, "jm", "jm-system")


def test_a_restart_confirms_every_resource_from_the_watches_and_writes_nothing(
    started: tuple[ControlPlane, client.ApiClient, Path], tmp_path: Path
) -> None:
    plane, api, kubeconfig = started
    namespace = f"r-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
    )
    make_secrets(api, namespace)
    log = tmp_path / "operator.log"
    operator = start_operator(kubeconfig, log, USER, env={"JM_LOG_LEVEL": "INFO"})
    try:
        names = [f"shop-{index}" for index in range(CRS)]
        for name in names:
            CustomApi(api).create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, cr_body(name, full_spec())
            )
        for name in names:
            wait_condition(api, namespace, name, "Ready", "True")
        time.sleep(3)  # the Deployments' status settles; the reconciles it triggers end
    finally:
        operator.stop()

    start = audit_position(plane.audit_log)
    operator = start_operator(kubeconfig, log, USER, env={"JM_LOG_LEVEL": "INFO"})
    try:
        wait_for(lambda: operator.reconciles("success") >= CRS, 120, what="a reconcile of every CR")
        time.sleep(3)
    finally:
        operator.stop()
    requests = audit_requests(plane.audit_log, USER, start)
    writes = [f"{r['verb']} {r['requestURI']}" for r in requests if r["verb"] in WRITE_VERBS]
    assert writes == []
    per_resource = [
        f"{r['verb']} {r['requestURI']}"
        for r in requests
        if r.get("objectRef", {}).get("namespace") == namespace
        and r["verb"] not in ("list", "watch")
    ]
    assert len(per_resource) <= REQUESTS_PER_CR * CRS, per_resource
