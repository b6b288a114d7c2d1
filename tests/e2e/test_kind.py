"""The README's kind path on a real kind cluster: our operator image in the Docker engine
under the README's tag, the README's ``kind load docker-image`` line, the chart installed
with ``image.pullPolicy=Never``; then the example resource becomes Ready with its children.

kind runs on our own dockerd from a node image made on this machine (devkit.dockerd,
devkit.kindnode, devkit.kindcluster); skipped with the reason where no Docker engine can
run. The image comes from devkit.images (buildah, the same operator/Dockerfile): the
README's ``docker build`` line itself is tests/docker's. Run just this file with:
``.venv/bin/pytest -m kind tests/e2e``.
"""

from __future__ import annotations

import re
import shlex
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, dynamic

from devkit.crs import wait_condition
from devkit.docker_build import DOCUMENTS
from devkit.dockerd import DockerEngine
from devkit.images import build_images
from devkit.kindcluster import KindCluster
from devkit.kubetools import api_client, apply_crds, load_yaml_documents
from devkit.manifests import EXAMPLE_CR
from devkit.product import (
    INSTANCE,
    OPERATOR_NAMESPACE,
    SHOP,
    UNDEPLOYED_IMAGES,
    apply_example_cr,
    delete_namespace,
    deploy_shop,
    example_cr,
    install_operator,
    pods_of,
    uninstall_operator,
)
from devkit.toolchain import prometheus_operator_crds

pytestmark = [pytest.mark.kind, pytest.mark.timeout(3600)]

OPERATOR_IMAGE = "jewelry-monitoring-operator"
# The README's variables (its image names are $REGISTRY/<name>:$TAG), as a user sets them.
# (kind load puts the image on the node: nothing is pulled from REGISTRY.)
README_VARIABLES = {"REGISTRY": "localhost/jm", "TAG": "kind"}
CHART_USER = 10001


def documented_kind_load(variables: dict[str, str]) -> list[str]:
    """The README's ``kind load docker-image <image>`` (inline code), ``variables``
    expanded."""
    found = {
        " ".join(command.split())
        for document in DOCUMENTS
        for command in re.findall(r"`(kind load docker-image\s[^`]+)`", document.read_text())
    }
    assert len(found) == 1, found
    return shlex.split(string.Template(found.pop()).substitute(variables))


@pytest.fixture(scope="module")
def images(docker_engine: DockerEngine, kind_cluster: KindCluster) -> dict[str, str]:
    """Our images on the node: the operator's put there by the README's line (from the
    engine, under the README's tag), the others from their archives. Short name -> image."""
    built = build_images(progress=lambda line: print(line, flush=True))
    command = documented_kind_load(README_VARIABLES)
    tag = command[-1]
    assert tag.startswith(f"{README_VARIABLES['REGISTRY']}/{OPERATOR_IMAGE}:"), command
    docker_engine.docker("load", "--input", str(built[OPERATOR_IMAGE].archive), timeout=600)
    docker_engine.docker("tag", built[OPERATOR_IMAGE].name, tag)
    kind_cluster.kind(*command[1:], "--name", kind_cluster.name, timeout=900)
    for name, image in built.items():
        if name not in (OPERATOR_IMAGE, *UNDEPLOYED_IMAGES):
            kind_cluster.load_image_archive(image.archive)
    return {**{name: image.name for name, image in built.items()}, OPERATOR_IMAGE: tag}


@pytest.fixture(scope="module")
def kube(kind_cluster: KindCluster, images: dict[str, str]) -> Iterator[client.ApiClient]:
    """prometheus-operator's CRDs, and the chart installed with the README's image and
    ``image.pullPolicy=Never``, one replica Ready."""
    api = api_client(kind_cluster.kubeconfig)
    apply_crds(api, prometheus_operator_crds(), timeout=120)
    try:
        install_operator(kind_cluster.kubeconfig, api, images, replicas=1)
        yield api
    finally:
        uninstall_operator(kind_cluster.kubeconfig, api)


@pytest.fixture(scope="module")
def example(kube: client.ApiClient, images: dict[str, str]) -> Iterator[dict[str, Any]]:
    """manifests/dev with our images, and the example resource with our exporter images
    once its exporters are available; both removed at the end (the kind backend's cluster
    serves the other modules next)."""
    try:
        deploy_shop(kube, images)
        yield apply_example_cr(kube, example_cr(images))
    finally:
        delete_namespace(client.CoreV1Api(kube), SHOP)


def test_operator_runs_non_root_from_the_chart(
    kube: client.ApiClient, images: dict[str, str]
) -> None:
    pods = pods_of(client.CoreV1Api(kube), OPERATOR_NAMESPACE, INSTANCE)
    assert pods and all(pod.status.phase == "Running" for pod in pods)
    for pod in pods:
        assert pod.spec.security_context.run_as_user == CHART_USER
        (container,) = pod.spec.containers
        assert container.image == images[OPERATOR_IMAGE]  # the README's kind load line's
        assert container.image_pull_policy == "Never"
        assert container.security_context.read_only_root_filesystem is True


def test_example_becomes_ready_with_its_children(
    kube: client.ApiClient, example: dict[str, Any], tmp_path: Path
) -> None:
    namespace, name = example["metadata"]["namespace"], example["metadata"]["name"]
    cr = wait_condition(kube, namespace, name, "Ready", "True", timeout=300)

    # Every object the offline renderer predicts exists, owned by the resource.
    rendered = subprocess.run(
        [sys.executable, "-m", "jewelry_monitoring.cli", "render", "-f", str(EXAMPLE_CR)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    expected = load_yaml_documents(rendered)
    assert {o["kind"] for o in expected} >= {"ServiceMonitor", "PrometheusRule", "Deployment"}
    # The discovery cache in the test's directory: by default the client leaves an
    # osrcp-*.json file in the system temp dir for good.
    resources = dynamic.DynamicClient(kube, cache_file=str(tmp_path / "discovery.json")).resources
    for obj in expected:
        api = resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        live = api.get(name=obj["metadata"]["name"], namespace=namespace).to_dict()
        owners = live["metadata"].get("ownerReferences", [])
        assert [o["uid"] for o in owners] == [cr["metadata"]["uid"]], obj["metadata"]["name"]
    children = {(c["kind"], c["name"]) for c in cr["status"]["children"]}
    assert {(o["kind"], o["metadata"]["name"]) for o in expected} <= children
