"""What a node changes on the host, and how ``stop()`` puts it back.

kubelet, containerd and CNI write into host directories whatever their configuration says,
change kernel settings (kubelet's setupKernelTunables, the bridge plugin's isGateway), make
``kubepods`` cgroups under every hierarchy and mount pod volumes. A node records what was
there at its start and removes what it added; ``host_footprint`` / ``host_leftovers`` say
what differs, for the tests that prove nothing stays behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from devkit.cluster import _alive
from devkit.node.network import CNI_NETWORK, NETNS_DIR, links, netns_names

# One node runs per host (the bridge, iptables chains and the ``kubepods`` cgroups are
# host-wide): this file names it (devkit.node.claim).
HOST_CLAIM = Path("/run/jm-node.json")
# Short paths for what holds unix sockets (containerd's, kubelet's root dir): a socket path
# has at most 104 bytes, and a pytest temporary directory alone can take 80.
SHORT_ROOT = Path("/var/lib/jm-node")
# Host-wide kernel settings that kubelet (setupKernelTunables) and the bridge plugin
# (isGateway) change; recorded at start, put back at stop.
HOST_SYSCTLS = (
    "net/ipv4/ip_forward",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# Host directories kubelet, containerd and CNI write into whatever their configuration
# says; each is removed at stop if this node created it.
HOST_DIRECTORIES = (
    SHORT_ROOT,
    Path("/var/log/containers"),
    Path("/var/lib/cni"),
    Path("/run/containerd"),
    NETNS_DIR,
)
CGROUP_ROOT = Path("/sys/fs/cgroup")


def read_sysctls() -> dict[str, str]:
    """The HOST_SYSCTLS as they are now."""
    return {name: _read_sysctl(name) for name in HOST_SYSCTLS}


def missing_directories() -> list[str]:
    """The HOST_DIRECTORIES that do not exist now (a node that makes them removes them)."""
    return [str(path) for path in HOST_DIRECTORIES if not path.exists()]


def restore_host(
    saved_sysctls: Mapping[str, str], created_directories: list[str], workdir: Path
) -> None:
    """Put the kernel settings back, remove the pods' cgroups, container log links and CNI
    results, and the host directories the node in ``workdir`` created (once empty)."""
    for name, value in saved_sysctls.items():
        with contextlib.suppress(OSError):
            (Path("/proc/sys") / name).write_text(value)
    _remove_cgroups("kubepods")
    with contextlib.suppress(OSError):
        for entry in Path("/var/log/containers").iterdir():
            if entry.is_symlink() and str(workdir) in os.readlink(entry):
                entry.unlink()
    results = Path("/var/lib/cni/results")
    if results.is_dir():
        # containerd's CRI sets up each pod's loopback as a network of its own.
        for network in (CNI_NETWORK, "cni-loopback"):
            for entry in results.glob(f"{network}-*"):
                entry.unlink(missing_ok=True)
    # Deepest first, and only directories this node made that are now empty.
    for directory in sorted(created_directories, key=len, reverse=True):
        _remove_empty_tree(Path(directory))


def host_footprint() -> dict[str, list[str]]:
    """Everything on the host a node can touch, as comparable strings per aspect."""
    watched_mounts = (
        "/run/netns/",
        "/run/containerd/",
        f"{SHORT_ROOT}/",
        "/var/lib/kubelet/",
        "/var/lib/cni/",
    )
    mounts = [
        target
        for target in _mount_targets()
        if target.startswith(watched_mounts) or "/node/" in target
    ]
    host_links = [f"{link['ifname']} ({link.get('link_type', '')})" for link in links()]
    routes = subprocess.run(
        ["ip", "route", "show", "table", "all"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    ruleset = subprocess.run(
        ["nft", "list", "ruleset"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    files = [
        str(path)
        for directory in (*HOST_DIRECTORIES, Path("/var/lib/cni/results"))
        for path in ([directory, *directory.iterdir()] if directory.is_dir() else [])
    ]
    return {
        "mount": sorted(mounts),
        "link": sorted(host_links),
        "route": sorted(routes),
        "nft": sorted(line.strip() for line in ruleset if line.strip()),
        "netns": netns_names(),
        "cgroup": sorted(str(path) for path in kubepods_cgroups()),
        "file": sorted(files),
        "sysctl": [f"{name}={_read_sysctl(name)}" for name in HOST_SYSCTLS],
    }


def host_leftovers(footprint_before: Mapping[str, list[str]], workdir: Path) -> list[str]:
    """How the host differs from ``footprint_before``, plus processes and files of ``workdir``."""
    found: list[str] = []
    now = host_footprint()
    for aspect, before in footprint_before.items():
        found += [f"{aspect}: {item} (new)" for item in sorted(set(now[aspect]) - set(before))]
        found += [f"{aspect}: {item} (gone)" for item in sorted(set(before) - set(now[aspect]))]
    marker = str(workdir).encode()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes():
                found.append(f"process {entry.name}: {(entry / 'cmdline').read_bytes()!r}")
    if workdir.exists():
        found.append(f"directory {workdir}")
    if HOST_CLAIM.exists():
        found.append(f"claim {HOST_CLAIM}")
    return found


def command_has(pid: int, marker: bytes) -> bool:
    """Whether process ``pid`` runs and names ``marker`` on its command line."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes() and _alive(pid)
    except OSError:
        return False


def unmount_under(root: Path) -> None:
    """Unmount everything at or below ``root``, deepest first."""
    for target in sorted(_mounts_under(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def kubepods_cgroups(name: str = "kubepods") -> list[Path]:
    """The ``name`` cgroup directories under every hierarchy (v1 controllers and unified)."""
    if not CGROUP_ROOT.is_dir():
        return []
    return [hierarchy / name for hierarchy in CGROUP_ROOT.iterdir() if (hierarchy / name).is_dir()]


def _read_sysctl(name: str) -> str:
    return (Path("/proc/sys") / name).read_text().strip()


def _mount_targets() -> list[str]:
    return [
        line.split()[4].replace("\\040", " ")
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
    ]


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root).rstrip("/") + "/"
    return [
        target for target in _mount_targets() if target == str(root) or target.startswith(prefix)
    ]


def _remove_cgroups(name: str) -> None:
    """Kill what still runs in the ``name`` cgroups (only a dead node leaves any), remove them."""
    killed = False
    for top in kubepods_cgroups(name):
        for procs in top.rglob("cgroup.procs"):
            with contextlib.suppress(OSError, ValueError):
                for pid in procs.read_text().split():
                    os.kill(int(pid), signal.SIGKILL)
                    killed = True
    if killed:
        time.sleep(0.5)  # a killed task leaves its cgroup as it exits
    for top in kubepods_cgroups(name):
        directories = sorted(
            (path for path, _, _ in os.walk(top)), key=lambda path: path.count("/"), reverse=True
        )
        for directory in directories:
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def _remove_empty_tree(directory: Path) -> None:
    if not directory.is_dir() or directory.is_symlink():
        return
    for path, _, _ in sorted(
        os.walk(directory), key=lambda entry: entry[0].count("/"), reverse=True
    ):
        with contextlib.suppress(OSError):
            os.rmdir(path)
