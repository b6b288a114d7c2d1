"""End to end on a real kind cluster: the images, the chart, the example CR, its children.

Needs a Docker engine (kind runs its nodes as containers) and network access for the base
images; skips with the reason when ``docker info`` fails -- always, on machines without an
engine. Run just this test with: ``.venv/bin/pytest -m kind tests/e2e``.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client, dynamic

from devkit.crs import GROUP, PLURAL, VERSION, wait_condition
from devkit.kindcluster import (
    REPO,
    KindCluster,
    docker_build,
    docker_problem,
    new_kind_cluster,
    run,
)
from devkit.kubetools import api_client, apply_crds, load_yaml_documents, wait_for
from devkit.manifests import CHART, EXAMPLE_CR
from devkit.operator_process import apply_objects
from devkit.product import dev_shop_objects, retag_images
from devkit.toolchain import binary, prometheus_operator_crds

pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]

OPERATOR_IMAGE, APP_IMAGE, TAG = "jewelry-monitoring-operator", "jewelry-shop", "e2e"
RELEASE, OPERATOR_NAMESPACE = "jewelry-monitoring", "jewelry-monitoring"


@pytest.fixture(scope="module")
def kind_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindCluster]:
    problem = docker_problem()
    if problem:
        pytest.skip(f"kind e2e needs a Docker engine: {problem}")
    with new_kind_cluster(tmp_path_factory.mktemp("kind")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def kube(kind_cluster: KindCluster) -> client.ApiClient:
    """The images built and loaded, prometheus-operator's CRDs and the chart installed."""
    docker_build(f"{OPERATOR_IMAGE}:{TAG}", REPO / "operator" / "Dockerfile", REPO)
    docker_build(f"{APP_IMAGE}:{TAG}", REPO / "app" / "Dockerfile", REPO / "app")
    for image in (OPERATOR_IMAGE, APP_IMAGE):
        kind_cluster.load_image(f"{image}:{TAG}")
    api = api_client(kind_cluster.kubeconfig)
    apply_crds(api, prometheus_operator_crds(), timeout=120)
    run(
        [
            str(binary("helm")),
            "install",
            RELEASE,
            str(CHART),
            "--kubeconfig",
            str(kind_cluster.kubeconfig),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--set",
            f"image.repository={OPERATOR_IMAGE}",
            "--set",
            f"image.tag={TAG}",
            "--set",
            "image.pullPolicy=Never",
            "--wait",
            "--timeout",
            "300s",
        ]
    )
    return api


def _available(apps: client.AppsV1Api, namespace: str, name: str) -> bool:
    status = apps.read_namespaced_deployment(name, namespace).status
    return any(c.type == "Available" and c.status == "True" for c in status.conditions or [])


def test_operator_runs_non_root_from_the_chart(kube: client.ApiClient) -> None:
    core = client.CoreV1Api(kube)
    pods = core.list_namespaced_pod(
        OPERATOR_NAMESPACE, label_selector=f"app.kubernetes.io/instance={RELEASE}"
    ).items
    assert pods and all(p.status.phase == "Running" for p in pods)
    for pod in pods:
        assert pod.spec.security_context.run_as_user == 10001
        (container,) = pod.spec.containers
        assert container.security_context.read_only_root_filesystem is True


def test_example_becomes_ready_with_its_children(kube: client.ApiClient, tmp_path: Path) -> None:
    apply_objects(kube, retag_images(dev_shop_objects(), {APP_IMAGE: f"{APP_IMAGE}:{TAG}"}))
    example = yaml.safe_load(EXAMPLE_CR.read_text())
    namespace, name = example["metadata"]["namespace"], example["metadata"]["name"]
    client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, example
    )
    cr = wait_condition(kube, namespace, name, "Ready", "True", timeout=300)

    # Every object the offline renderer predicts exists, owned by the CR.
    rendered = subprocess.run(
        [sys.executable, "-m", "jewelry_monitoring.cli", "render", "-f", str(EXAMPLE_CR)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = load_yaml_documents(rendered)
    assert {o["kind"] for o in expected} >= {"ServiceMonitor", "PrometheusRule", "Deployment"}
    resources = dynamic.DynamicClient(kube).resources
    for obj in expected:
        api = resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        live = api.get(name=obj["metadata"]["name"], namespace=namespace).to_dict()
        owners = live["metadata"].get("ownerReferences", [])
        assert [o["uid"] for o in owners] == [cr["metadata"]["uid"]], obj["metadata"]["name"]
    children = {(c["kind"], c["name"]) for c in cr["status"]["children"]}
    assert {(o["kind"], o["metadata"]["name"]) for o in expected} <= children

    # The shop itself (built from app/Dockerfile) comes up behind its probes.
    apps = client.AppsV1Api(kube)
    wait_for(
        lambda: _available(apps, namespace, "jewelry-shop"),
        timeout=600,
        interval=5,
        what="the jewelry-shop Deployment to become Available",
    )
