"""Our dockerd: its own roots, nothing pulled from anywhere, every bridge fenced in (checked
by inspection, never by sending), and nothing left behind once stopped."""

from __future__ import annotations

import contextlib
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from devkit.dockerd import DEAD_PROXY, DockerEngine, route_device, why_no_engine
from devkit.node.host import _mount_targets
from devkit.node.network import links, nft_tables
from devkit.toolchain import binary


def test_the_engine_keeps_to_its_own_roots_and_rules(engine: DockerEngine) -> None:
    info = json.loads(engine.docker("info", "--format", "{{json .}}"))
    assert info["DockerRootDir"] == str(engine.root / "data")
    assert (info["Driver"], info["CgroupDriver"]) == ("overlay2", "cgroupfs")
    # --iptables=false: dockerd programs no rules of its own; the only ones are our drop.
    assert (
        "DOCKER"
        not in subprocess.run(
            ["nft", "list", "ruleset"], capture_output=True, text=True, check=True
        ).stdout
    )
    assert not Path("/etc/docker/key.json").exists()


def test_every_bridge_is_fenced_in(engine: DockerEngine) -> None:
    named = engine.create_network("fenced")
    # A network made without naming its bridge (as `docker network create` does for a
    # user) gets dockerd's "br-..." name, which the drop covers too.
    engine.docker("network", "create", "--driver=bridge", "unnamed")
    try:
        assert engine.safety_problems() == []
        assert route_device(named.gateway) == "lo"  # the host's own address on the bridge
        assert route_device(str(named.subnet[5])) == named.bridge
        table = engine.ruleset()
        assert "hook forward" in table
        assert f'iifname "{named.bridge[:-1]}*" oifname != "{named.bridge[:-1]}*" drop' in table
        assert 'iifname "br-*" oifname != "br-*" drop' in table
    finally:
        engine.docker("network", "rm", "unnamed")
        engine.docker("network", "rm", named.name)
        engine.networks.remove(named)


def test_the_safety_check_names_a_missing_drop(engine: DockerEngine) -> None:
    """The inspection can fail: without the table it names each missing rule."""
    subprocess.run(["nft", "delete", "table", "inet", engine.nft_table], check=True)
    try:
        problems = engine.safety_problems()
    finally:
        engine._install_forward_rules()
    assert len(problems) == len(engine.forward_rules()) + 1, problems
    assert engine.safety_problems() == []


def test_a_pull_dies_at_the_dead_loopback_proxy(engine: DockerEngine) -> None:
    """dockerd's only way out is a proxy on a loopback port where nothing listens."""
    result = subprocess.run(
        ["docker", "pull", "registry.example/never:1"],
        env=engine.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"proxyconnect tcp: dial tcp {DEAD_PROXY.removeprefix('http://')}" in result.stderr


def _host_items() -> list[str]:
    """Links, nft tables, mounts, cgroups, processes and /run entries of the host."""
    cgroups = [str(path) for path in Path("/sys/fs/cgroup").glob("*/*") if path.is_dir()]
    processes = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                processes.append((entry / "cmdline").read_bytes().decode(errors="replace"))
    return [
        *(link["ifname"] for link in links()),
        *nft_tables(),
        *_mount_targets(),
        *cgroups,
        *processes,
        *(str(path) for path in Path("/run").iterdir()),
    ]


@pytest.fixture
def lone_engine(tmp_path: Path) -> DockerEngine:
    reason = why_no_engine()
    if reason:
        pytest.skip(reason)
    return DockerEngine(tmp_path / "dockerd")


def test_stop_leaves_nothing_behind(lone_engine: DockerEngine, tmp_path: Path) -> None:
    """An engine with a container running on a network of its own: once it is stopped, no
    process, mount, cgroup, bridge, rule or directory of it is left."""
    run_before = set(Path("/run").iterdir())
    image = tmp_path / "pause.tar"
    with tarfile.open(image, "w") as tar:
        tar.add(binary("jm-pause"), arcname="pause")
    lone_engine.start()
    try:
        network = lone_engine.create_network("lone")
        lone_engine.docker("import", "--change", 'CMD ["/pause"]', str(image), "jm/pause:1")
        lone_engine.docker("run", "--detach", f"--network={network.name}", "jm/pause:1")
        running = _host_items()
        # What the check below looks for is there while the engine runs.
        assert [item for item in running if network.bridge in item]
        assert [item for item in running if lone_engine.cgroup_parent in item]
        assert [item for item in running if str(lone_engine.root) in item]
    finally:
        lone_engine.stop()
    assert lone_engine.leftovers() == []
    markers = (lone_engine.ident, lone_engine.cgroup_parent, str(lone_engine.root))
    assert [item for item in _host_items() if any(m in item for m in markers)] == []
    created = {path for path in Path("/run").iterdir() if path not in run_before}
    # /run/docker is dockerd's alone (a node's containerd may make /run/containerd meanwhile).
    assert Path("/run/docker") not in created


def test_a_privileged_container_starts(engine: DockerEngine, tmp_path: Path) -> None:
    """kind's nodes are privileged containers. Root here lacks CAP_SYS_RESOURCE, which plain
    runc asked for ("unable to apply caps: operation not permitted"); the engine's runtime
    (devkit.bounded_runc) leaves out what root cannot grant."""
    image = tmp_path / "pause.tar"
    with tarfile.open(image, "w") as tar:
        tar.add(binary("jm-pause"), arcname="pause")
    engine.docker("import", "--change", 'CMD ["/pause"]', str(image), "jm/pause:privileged")
    container = engine.docker(
        "run", "--detach", "--privileged", "--network=none", "jm/pause:privileged"
    ).strip()
    try:
        state = json.loads(engine.docker("inspect", "--format={{json .State}}", container))
        assert state["Running"], state
    finally:
        engine.docker("rm", "--force", container)
