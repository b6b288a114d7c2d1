"""One node per host: whether this host can run one, and the claim that says whose it is.

The bridge, the iptables chains and the ``kubepods`` cgroups are host-wide, so one node runs
per host, named in ``HOST_CLAIM`` (its working directory, its starter's pid, then its
processes' pids). A claim whose processes all died is stale: the next node cleans up after it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from devkit.cluster import _alive
from devkit.node.host import CGROUP_ROOT, HOST_CLAIM
from devkit.node.network import CNI_BIN_DIR
from devkit.toolchain import SETUP_HINT, binary

NODE_COMMANDS = ("kubelet", "kube-proxy", "kube-scheduler", "coredns", "jm-pause", "jm-probe")
HOST_COMMANDS = (
    "containerd",
    "containerd-shim-runc-v2",
    "runc",
    "ctr",
    "ip",
    "nft",
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables-save",
    "ip6tables-restore",
)


class NodeUnavailable(RuntimeError):
    """This host cannot run the node now; the message says why."""


def why_no_node() -> str | None:
    """Why a node cannot start here (missing privilege, tool or build, or a running node)."""
    if os.geteuid() != 0:
        return "a node needs root (network, mounts, cgroups)"
    for name in NODE_COMMANDS:
        try:
            binary(name)
        except FileNotFoundError:
            return f"{name} is not built: {SETUP_HINT}"
    for name in HOST_COMMANDS:
        if not shutil.which(name):
            return f"{name} is not installed: {SETUP_HINT}"
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        if not (CNI_BIN_DIR / plugin).is_file():
            return f"CNI plugin {CNI_BIN_DIR / plugin} is not installed: {SETUP_HINT}"
    if not (CGROUP_ROOT / "memory").is_dir():
        return f"no cgroup v1 memory controller under {CGROUP_ROOT}"
    owner = claim_owner()
    if owner is not None and claim_alive(owner):
        return f"another node runs on this host (working directory {owner.get('workdir')})"
    return None


def claim_owner() -> dict[str, object] | None:
    """The claim on this host, if any (possibly stale: see ``claim_alive``)."""
    try:
        owner: dict[str, object] = json.loads(HOST_CLAIM.read_text())
    except (OSError, ValueError):
        return None
    return owner


def claim_alive(owner: Mapping[str, object]) -> bool:
    pids = owner.get("pids")
    candidates = list(pids.values()) if isinstance(pids, dict) else []
    starter = owner.get("pid")
    if not candidates and isinstance(starter, int):
        candidates = [starter]  # still starting: its starter process is the owner
    return any(isinstance(pid, int) and _alive(pid) for pid in candidates)


def claim_host(workdir: Path) -> None:
    """Claim the host for the node in ``workdir`` (no claim may exist: clean a stale one
    first); NodeUnavailable when another node was quicker."""
    claim = {"workdir": str(workdir), "pid": os.getpid(), "pids": {}}
    try:
        with HOST_CLAIM.open("x") as handle:
            json.dump(claim, handle)
    except FileExistsError as error:
        raise NodeUnavailable("another node is starting on this host") from error


def update_claim(workdir: Path, pids: Mapping[str, int]) -> None:
    """Record the node's processes in its claim (so a dead node's claim is known stale)."""
    with contextlib.suppress(OSError):
        owner = json.loads(HOST_CLAIM.read_text())
        if owner.get("workdir") == str(workdir):
            owner["pids"] = dict(pids)
            HOST_CLAIM.write_text(json.dumps(owner))


def release_host(workdir: Path) -> None:
    owner = claim_owner()
    if owner is not None and owner.get("workdir") == str(workdir):
        HOST_CLAIM.unlink(missing_ok=True)
