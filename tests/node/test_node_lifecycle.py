"""The node stops without a trace and starts again warm (this restarts the session's node)."""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from devkit.kubetools import wait_for
from devkit.node import PROBE_IMAGE, Node

pytestmark = pytest.mark.cluster


def test_stop_leaves_nothing_behind_and_the_node_starts_again(
    node: Node, node_api: client.ApiClient, node_namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    core = client.CoreV1Api(node_api)
    # Something of everything: a container (mounts, netns, veth, cgroups) and a Service
    # (kube-proxy's rules).
    core.create_namespaced_pod(
        node_namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="resident", labels={"app": "resident"}),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="probe", image=PROBE_IMAGE, image_pull_policy="Never", args=["serve"]
                    )
                ]
            ),
        ),
    )
    core.create_namespaced_service(
        node_namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="resident"),
            spec=client.V1ServiceSpec(
                selector={"app": "resident"},
                ports=[client.V1ServicePort(port=80, target_port=8080)],
            ),
        ),
    )
    wait_for(
        lambda: core.read_namespaced_pod("resident", node_namespace).status.phase == "Running",
        timeout=90,
        what="the resident pod Running",
    )

    node.stop()
    assert node.leftovers() == []

    started = time.monotonic()
    node.start()
    ready_after = time.monotonic() - started
    with capsys.disabled():
        print(f"\n[node] warm start to Ready (images reloaded): {ready_after:.1f} s")
    assert PROBE_IMAGE in node.images()
