"""`jm-dev demo` never harms a cluster the user did not name, nor CRDs a cluster already has.

Before, with KUBECONFIG set, the demo server-side-applied its pinned prometheus-operator CRDs
into that cluster, replacing newer ones and taking them from kube-prometheus-stack's Helm
release (issue 11). Here a fresh control plane plays the user's cluster, holding a "newer",
Helm-owned ServiceMonitor CRD.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devkit.cluster import ADMIN_USER, ControlPlane
from devkit.kubetools import api_client, crd_established, load_yaml_documents, wait_for
from devkit.manifests import chart_crd_files
from devkit.operator_process import WRITE_VERBS, audit_position
from devkit.sandbox import JmDevSandbox
from devkit.toolchain import prometheus_operator_crds

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

CONTEXT = "users-cluster"
USERS_CRD = "servicemonitors.monitoring.coreos.com"
HELM_OWNED = {
    "labels": {"app.kubernetes.io/managed-by": "Helm"},
    "annotations": {
        "operator.prometheus.io/version": "0.99.0",
        "meta.helm.sh/release-name": "kube-prometheus-stack",
        "meta.helm.sh/release-namespace": "monitoring",
    },
}


@pytest.fixture(scope="module")
def users_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A control plane with kube-prometheus-stack's newer ServiceMonitor CRD on it."""
    plane = ControlPlane.create(tmp_path_factory.mktemp("users-cluster")).start()
    try:
        path = next(p for p in prometheus_operator_crds() if "servicemonitors" in p.name)
        crd = load_yaml_documents(path.read_text())[0]
        for key, marks in HELM_OWNED.items():
            crd["metadata"].setdefault(key, {}).update(marks)
        extensions = client.ApiextensionsV1Api(api_client(plane.kubeconfig))
        extensions.create_custom_resource_definition(crd)
        wait_for(
            lambda: crd_established(extensions, USERS_CRD), 60, what=f"{USERS_CRD} Established"
        )
        yield plane
    finally:
        plane.stop()


@pytest.fixture
def users_kubeconfig(users_cluster: ControlPlane, tmp_path: Path) -> Path:
    """The user's kubeconfig: that cluster under a context name of the user's choosing."""
    document = yaml.safe_load(users_cluster.kubeconfig.read_text())
    document["contexts"][0]["name"] = CONTEXT
    document["current-context"] = CONTEXT
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(document))
    return path


def _crds(plane: ControlPlane) -> dict[str, Any]:
    listing = client.ApiextensionsV1Api(api_client(plane.kubeconfig))
    return {
        crd.metadata.name: crd.metadata for crd in listing.list_custom_resource_definition().items
    }


def _crd_writes(plane: ControlPlane, since: int) -> list[str]:
    writes = []
    for line in plane.audit_log.read_text().splitlines()[since:]:
        entry = json.loads(line)
        ref = entry.get("objectRef", {})
        # The API server's own controllers write the new CRDs' status subresource.
        if (
            ref.get("resource") == "customresourcedefinitions"
            and not ref.get("subresource")
            and entry["verb"] in WRITE_VERBS
        ):
            writes.append(f"{entry['verb']} {ref.get('name')} by {entry['user']['username']}")
    return writes


def _jm_dev(
    sandbox: JmDevSandbox, kubeconfig: Path, *arguments: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        sandbox.command("demo", *arguments),
        env={**sandbox.env, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_context_the_demo_refuses_the_kubeconfig_cluster(
    sandbox: JmDevSandbox, users_cluster: ControlPlane, users_kubeconfig: Path
) -> None:
    before, since = _crds(users_cluster), audit_position(users_cluster.audit_log)
    result = _jm_dev(sandbox, users_kubeconfig)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"KUBECONFIG is set ({users_kubeconfig})" in result.stderr
    assert "--context NAME --yes-really-write-to-this-cluster" in result.stderr
    assert _crd_writes(users_cluster, since) == []
    assert _crds(users_cluster).keys() == before.keys()
    assert sandbox.processes() == [] and sandbox.files_left() == []


def test_a_named_cluster_that_is_not_local_needs_the_confirmation(
    sandbox: JmDevSandbox, users_cluster: ControlPlane, users_kubeconfig: Path
) -> None:
    since = audit_position(users_cluster.audit_log)
    result = _jm_dev(sandbox, users_kubeconfig, "--context", CONTEXT)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"context '{CONTEXT}' is the cluster at {users_cluster.server}" in result.stderr
    assert "--yes-really-write-to-this-cluster" in result.stderr
    assert _crd_writes(users_cluster, since) == []


def test_the_users_newer_helm_owned_crd_survives_the_demo(
    sandbox: JmDevSandbox, users_cluster: ControlPlane, users_kubeconfig: Path
) -> None:
    users_crd = _crds(users_cluster)[USERS_CRD]
    since = audit_position(users_cluster.audit_log)
    result = _jm_dev(
        sandbox, users_kubeconfig, "--context", CONTEXT, "--yes-really-write-to-this-cluster"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    said = [line for line in result.stdout.splitlines() if f"CRD {USERS_CRD} " in line]
    assert len(said) == 1, result.stdout
    assert said[0].strip().startswith(f"kept the cluster's own CRD {USERS_CRD} ("), said
    assert said[0].endswith("not replaced"), said
    for mark in (
        "operator.prometheus.io/version=0.99.0",
        "app.kubernetes.io/managed-by=Helm",
        "meta.helm.sh/release-name=kube-prometheus-stack",
    ):
        assert mark in said[0], said

    crds = _crds(users_cluster)
    after = crds[USERS_CRD]
    # Not replaced: the same spec generation and the same marks (the API server's own
    # controllers may still write the status subresource, which the audit check leaves out).
    assert after.generation == users_crd.generation
    assert (after.labels, after.annotations) == (users_crd.labels, users_crd.annotations)
    assert after.annotations["operator.prometheus.io/version"] == "0.99.0"
    assert after.labels["app.kubernetes.io/managed-by"] == "Helm"
    # What was missing is installed, and said so.
    for missing in (
        "prometheuses.monitoring.coreos.com",
        "jewelrymonitorings.monitoring.jewelry.io",
    ):
        assert missing in crds and missing in result.stdout
    writes = _crd_writes(users_cluster, since)
    assert writes, "the demo installed nothing"
    assert all(w.startswith("create ") and USERS_CRD not in w for w in writes), writes
    assert all(w.endswith(f"by {ADMIN_USER}") for w in writes), writes
    assert sandbox.processes() == [] and sandbox.files_left() == []


def test_the_plane_of_jm_dev_cluster_up_is_local_and_needs_no_confirmation(
    sandbox: JmDevSandbox,
) -> None:
    up = subprocess.run(
        sandbox.command("cluster", "up"), env=sandbox.env, capture_output=True, text=True
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        kubeconfig = sandbox.cache / "cluster" / "admin.kubeconfig"
        result = _jm_dev(sandbox, kubeconfig, "--context", "local")
        assert result.returncode == 0, result.stdout + result.stderr
        crds = [*chart_crd_files(), *prometheus_operator_crds()]
        expected = sum(len(load_yaml_documents(path.read_text())) for path in crds)
        assert f"installed {expected} missing CRDs" in result.stdout
    finally:
        down = subprocess.run(sandbox.command("cluster", "down"), env=sandbox.env)
    assert down.returncode == 0
    assert sandbox.processes() == [] and sandbox.files_left() == []
