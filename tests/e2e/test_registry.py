"""Install from your own registry (issue 18): both images pushed to a registry of the user's
(here a real one on loopback, devkit.registry), then the chart installed from the checkout
and from the archive ``helm package`` makes, with ``image.repository`` pointing at that
registry, and the operator's pod pulls its image from there and runs.

The node's containerd pulls from that registry by its name (``Node.allow_registry``); every
other registry stays a dead end, so a pull can only succeed from this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from devkit.images import build_images
from devkit.kubetools import api_client, apply_crds, wait_for
from devkit.manifests import chart_crd_files
from devkit.node import Node
from devkit.product import (
    CHART,
    POD_TIMEOUT,
    backend_name,
    delete_namespace,
    helm,
    helm_set,
    is_ready,
)
from devkit.registry import Registry, registry_server
from devkit.toolchain import prometheus_operator_crds

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.timeout(1800),
    # On the kind backend its cluster holds the host for the session (the local node cannot
    # start), and a kind node could not reach the host's loopback registry anyway;
    # tests/docker pushes to this registry through Docker there.
    pytest.mark.skipif(
        backend_name() != "node",
        reason=f"pulls through the local node's containerd, not the {backend_name()} backend",
    ),
]

IMAGES = ("jewelry-monitoring-operator", "jewelry-shop")
NAMESPACE = "jm-own-registry"
RELEASE = "jm-own-registry"


@pytest.fixture(scope="module")
def registry(node: Node) -> Iterator[Registry]:
    """A registry on loopback the node's containerd may pull from, for this module."""
    with registry_server() as running:
        node.allow_registry(running.host)
        try:
            yield running
        finally:
            node.forget_registry(running.host)


@pytest.fixture(scope="module")
def pushed(registry: Registry) -> dict[str, str]:
    """Both images, built here, pushed: short name -> reference in the registry."""
    built = build_images(progress=lambda line: print(line, flush=True))
    references = {}
    for name in IMAGES:
        tag = built[name].name.rsplit(":", 1)[1]
        references[name] = registry.push(built[name].archive, name, tag)
    return references


def test_both_images_are_in_the_registry(registry: Registry, pushed: dict[str, str]) -> None:
    for name, reference in pushed.items():
        assert reference.startswith(f"{registry.host}/{name}:")
        assert registry.tags(name) == [reference.rsplit(":", 1)[1]]


@pytest.mark.parametrize("source", ["checkout", "package"])
def test_the_chart_installs_and_its_operator_runs_from_the_registry(
    source: str, node: Node, pushed: dict[str, str], tmp_path: Path
) -> None:
    kubeconfig = node.plane.kubeconfig
    api = api_client(kubeconfig)
    apply_crds(api, chart_crd_files())
    apply_crds(api, prometheus_operator_crds(), timeout=120)
    chart = str(CHART)
    if source == "package":
        helm(kubeconfig, "package", str(CHART), "--destination", str(tmp_path))
        (archive,) = tmp_path.glob("jewelry-monitoring-*.tgz")
        chart = str(archive)
    repository, tag = pushed["jewelry-monitoring-operator"].rsplit(":", 1)
    core = client.CoreV1Api(api)
    try:
        helm(
            kubeconfig,
            "install",
            RELEASE,
            chart,
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            *helm_set(
                {
                    "image.repository": repository,
                    "image.tag": tag,
                    # Pulled even if the node holds an image of that name: the registry is
                    # the source.
                    "image.pullPolicy": "Always",
                    "crds.install": "false",
                    "watchNamespaces": f"{{{NAMESPACE}}}",
                }
            ),
        )

        def running_and_ready() -> client.V1Pod | None:
            pods = core.list_namespaced_pod(NAMESPACE).items
            ready = [p for p in pods if p.status.phase == "Running" and is_ready(p)]
            return ready[0] if ready else None

        pod = wait_for(running_and_ready, timeout=POD_TIMEOUT, interval=2, what="operator Ready")
        (status,) = pod.status.container_statuses
        assert status.image == f"{repository}:{tag}"
        # The digest it runs is the registry's: what was pulled from there.
        assert status.image_id.startswith(f"{repository}@sha256:"), status.image_id
        events = core.list_namespaced_event(
            NAMESPACE, field_selector=f"involvedObject.name={pod.metadata.name}"
        ).items
        pulled = [event.message for event in events if event.reason == "Pulled"]
        assert any(f'"{repository}:{tag}"' in message for message in pulled), pulled
    finally:
        if RELEASE in helm(kubeconfig, "list", "-q", "--namespace", NAMESPACE).split():
            helm(kubeconfig, "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait")
        delete_namespace(core, NAMESPACE)
