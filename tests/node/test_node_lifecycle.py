"""The node stops without a trace and starts again warm, alone and through `jm-dev cluster`.

These restart the session's node (one node runs per host), so they bring it back after.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from devkit import cli
from devkit.kubetools import wait_for
from devkit.node import (
    COMPONENT_PORTS,
    NODE_NAME,
    PROBE_IMAGE,
    Node,
    host_footprint,
    host_leftovers,
    write_image_archive,
)
from devkit.port_thief import PortThief
from devkit.ports import lost_bind
from devkit.toolchain import binary

pytestmark = pytest.mark.cluster


@pytest.fixture
def host_without_node(node: Node) -> Iterator[None]:
    """The session's node stopped for the test's duration."""
    node.stop()
    try:
        yield
    finally:
        node.start()


def test_stop_leaves_nothing_behind_and_the_node_starts_again(
    node: Node,
    node_api: client.ApiClient,
    node_namespace: str,
    figures: Callable[[str, str, str], None],
    caplog: pytest.LogCaptureFixture,
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

    caplog.set_level(logging.INFO, logger="devkit.node")
    started = time.monotonic()
    node.start()
    ready_after = time.monotonic() - started
    figures("node", "warm start to Ready (images from the image store)", f"{ready_after:.1f} s")
    assert PROBE_IMAGE in node.images()
    assert "probe.tar is in the image store already" in caplog.text, caplog.text


def test_an_archive_is_imported_again_only_when_its_image_changed(
    node: Node, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The image store (devkit.node) is keyed by the image's content, not by its name."""
    reference = f"localhost/jm/probe-{uuid.uuid4().hex[:8]}:1"
    files = {"jm-probe": binary("jm-probe")}
    first = write_image_archive(tmp_path / "first.tar", reference, files, ["/jm-probe"])
    changed = write_image_archive(
        tmp_path / "changed.tar", reference, files, ["/jm-probe", "serve"]
    )
    caplog.set_level(logging.INFO, logger="devkit.node")
    try:
        node.load_image(first)
        assert "imported first.tar" in caplog.text, caplog.text
        node.load_image(first)
        assert "first.tar is in the image store already" in caplog.text, caplog.text
        node.load_image(changed)
        assert "imported changed.tar" in caplog.text, caplog.text
        assert reference in node.images()
    finally:  # the node's next stop removes images whose archive is gone from its store
        first.unlink()
        changed.unlink()


def test_cluster_up_gains_a_node_and_down_leaves_nothing(
    host_without_node: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "cluster"
    monkeypatch.setattr(cli, "state_dir", lambda: state)
    before = host_footprint()

    assert cli.main(["cluster", "up"]) == 0
    try:
        said = capsys.readouterr().out
        assert f"node {NODE_NAME} Ready in" in said, said
    finally:
        assert cli.main(["cluster", "down"]) == 0

    assert host_leftovers(before, state) == []


def test_each_node_process_starts_again_on_fresh_ports(
    node: Node, host_without_node: None, port_thief: PortThief
) -> None:
    """kubelet, kube-proxy, kube-scheduler and the API relay each find their first ports
    taken (issue 17: a port found free may be bound by another process before ours)."""
    fields = [port for ports in COMPONENT_PORTS.values() for port in ports]
    port_thief.steal(len(fields))
    fresh = Node.for_plane(node.plane)
    assert sorted(getattr(fresh, port) for port in fields) == sorted(port_thief.stolen)
    fresh.start()
    try:
        assert not {getattr(fresh, port) for port in fields} & set(port_thief.stolen)
        for name in COMPONENT_PORTS:
            assert lost_bind(fresh.log_tail(name, lines=10_000)), f"{name} never lost its port"
    finally:
        fresh.stop()
    # Nothing of the processes it started twice stays behind (what other users of this host
    # removed meanwhile is theirs).
    assert [item for item in fresh.leftovers() if not item.endswith("(gone)")] == []
