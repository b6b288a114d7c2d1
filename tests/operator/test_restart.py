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
    audit_writes,
    install_rbac,
    start_operator,
)
from devkit.toolchain import prometheus_operator_crds
from jewelry_monitoring.builders.common import SPEC_HASH_ANNOTATION

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


def test_an_upgrade_replaces_an_exporter_service_that_has_a_cluster_ip(
    started: tuple[ControlPlane, client.ApiClient, Path], tmp_path: Path
) -> None:
    """Versions before issue 19's gave each exporter Service a ClusterIP; this one makes them
    headless. A ClusterIP cannot be removed from a Service (the API answers 422), so the
    upgraded operator replaces the old Service: it deletes exactly that object, creates the
    headless one, and the resource is Ready again with nothing left to write."""
    plane, api, kubeconfig = started
    core = client.CoreV1Api(api)
    namespace = f"u-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    make_secrets(api, namespace)
    service_name = "shop-redis-exporter"
    log = tmp_path / "operator.log"
    operator = start_operator(kubeconfig, log, USER)
    try:
        CustomApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, cr_body("shop", full_spec())
        )
        wait_condition(api, namespace, "shop", "Ready", "True")
    finally:
        operator.stop()

    # The Service as the earlier version left it: the same labels, owner and port, an
    # address from the Service range and that version's spec hash.
    headless = api.sanitize_for_serialization(core.read_namespaced_service(service_name, namespace))
    core.delete_namespaced_service(service_name, namespace)
    meta = {k: headless["metadata"][k] for k in ("name", "labels", "ownerReferences")}
    meta["annotations"] = {**headless["metadata"]["annotations"], SPEC_HASH_ANNOTATION: "0" * 16}
    spec = {"selector": headless["spec"]["selector"], "ports": headless["spec"]["ports"]}
    old = core.create_namespaced_service(namespace, {"metadata": meta, "spec": spec})
    assert old.spec.cluster_ip not in (None, "", "None")

    start = audit_position(plane.audit_log)
    operator = start_operator(kubeconfig, log, USER)
    try:
        replaced = wait_for(
            lambda: (
                (current := core.read_namespaced_service(service_name, namespace)).spec.cluster_ip
                == "None"
                and current
            ),
            60,
            what="the upgraded operator to replace the exporter Service with a headless one",
        )
        assert replaced.metadata.uid != old.metadata.uid
        assert replaced.metadata.owner_references[0].uid == meta["ownerReferences"][0]["uid"]
        wait_condition(api, namespace, "shop", "Ready", "True")
        writes = audit_writes(plane.audit_log, USER, start)
        assert f"delete services/{service_name}" in writes, writes
        settled = audit_position(plane.audit_log)
        time.sleep(5)
        assert [
            write for write in audit_writes(plane.audit_log, USER, settled) if "services/" in write
        ] == []
    finally:
        operator.stop()
