"""A throw-away kind cluster on our Docker engine (devkit.dockerd), from our node image.

``kind create cluster`` (kind v0.30, built by setup) runs one control-plane node, a
privileged container of the node image devkit.kindnode makes here, with:

- the engine's own bridge network for it (``KIND_EXPERIMENTAL_DOCKER_NETWORK``), behind
  the engine's forward drop like every bridge of it; the API server published on a free
  loopback port only;
- ``networking.disableDefaultCNI``: the node image's bridge CNI serves the pods (kindnetd
  cannot be built here, see devkit.kindnode);
- a kubeadm patch of the KubeletConfiguration, ``failCgroupV1: false``: kubelet 1.35
  refuses cgroup v1 hosts, as this one is, unless told otherwise;
- the API server's audit log at Metadata level, as the local control plane's, written to
  the working directory through a mount of the node (``audit_log``).

The node shares the host's kernel: the kubelet's kernel settings (node.HOST_SYSCTLS's) are
host-wide, and the node may not write them (its entrypoint makes /proc/sys read-only), so
``create`` sets them on the host first and ``delete`` puts the values back. It holds the
host's node claim meanwhile: a kind cluster and the local node (devkit.node) never run
together. ``delete`` removes the cluster, its network, and the host directory docker made
for the node's /lib/modules mount.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devkit.cluster import AUDIT_POLICY, free_port
from devkit.dockerd import DockerEngine, Network
from devkit.node.claim import NodeUnavailable, claim_alive, claim_host, claim_owner, release_host
from devkit.node.host import _read_sysctl
from devkit.node.node import _clean_stale_claim
from devkit.toolchain import binary

# What the kubelet sets at start (setupKernelTunables) unless they hold already; host-wide.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
# Where the node keeps the API server's audit policy and log (both mounts of the workdir).
NODE_AUDIT = "/etc/kubernetes/jm-audit"
# kind mounts the host's /lib/modules into its nodes; docker makes the directory if the host
# has none (a kernel without modules).
MODULES = Path("/lib/modules")


@dataclass
class KindCluster:
    """``create()`` then use ``kubeconfig``; ``delete()`` removes it all."""

    engine: DockerEngine
    workdir: Path
    image: str  # the node image, in the engine
    name: str = field(default_factory=lambda: f"jm-e2e-{uuid.uuid4().hex[:8]}")
    api_port: int = field(default_factory=free_port)
    network: Network | None = None
    saved_sysctls: dict[str, str] = field(default_factory=dict)
    created_modules: bool = False
    claimed: bool = False

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kind.kubeconfig"

    @property
    def audit_log(self) -> Path:
        """The API server's audit log (every request at Metadata level, as the local control
        plane's), written through a mount of the node."""
        return self.workdir / "audit" / "log" / "audit.log"

    def config(self) -> dict[str, object]:
        """kind's Cluster configuration (kind.x-k8s.io/v1alpha4)."""
        kubelet_patch = {"kind": "KubeletConfiguration", "failCgroupV1": False}
        audit_patch = {
            "kind": "ClusterConfiguration",
            "apiServer": {
                "extraArgs": {
                    "audit-policy-file": f"{NODE_AUDIT}/policy/policy.yaml",
                    "audit-log-path": f"{NODE_AUDIT}/log/audit.log",
                    "audit-log-mode": "blocking",
                },
                "extraVolumes": [
                    {
                        "name": f"audit-{part}",
                        "hostPath": f"{NODE_AUDIT}/{part}",
                        "mountPath": f"{NODE_AUDIT}/{part}",
                        "readOnly": part == "policy",
                        "pathType": "Directory",
                    }
                    for part in ("policy", "log")
                ],
            },
        }
        audit_mounts = [
            {
                "hostPath": str(self.workdir / "audit" / part),
                "containerPath": f"{NODE_AUDIT}/{part}",
                "readOnly": part == "policy",
            }
            for part in ("policy", "log")
        ]
        return {
            "kind": "Cluster",
            "apiVersion": "kind.x-k8s.io/v1alpha4",
            "networking": {
                "apiServerAddress": "127.0.0.1",
                "apiServerPort": self.api_port,
                "disableDefaultCNI": True,
            },
            "nodes": [{"role": "control-plane", "image": self.image, "extraMounts": audit_mounts}],
            "kubeadmConfigPatches": [yaml.safe_dump(kubelet_patch), yaml.safe_dump(audit_patch)],
        }

    def create(self, wait: str = "300s") -> KindCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self._claim_host()
            self._set_host_sysctls()
            self.network = self.engine.create_network(f"kind-{self.name}")
            self.created_modules = not MODULES.exists()
            (self.workdir / "audit" / "log").mkdir(parents=True, exist_ok=True)
            policy = self.workdir / "audit" / "policy" / "policy.yaml"
            policy.parent.mkdir(parents=True, exist_ok=True)
            policy.write_text(yaml.safe_dump(AUDIT_POLICY))
            config = self.workdir / "kind-config.yaml"
            config.write_text(yaml.safe_dump(self.config()))
            self.kind(
                "create",
                "cluster",
                "--name",
                self.name,
                "--config",
                str(config),
                "--kubeconfig",
                str(self.kubeconfig),
                "--wait",
                wait,
                timeout=900,
            )
        except BaseException:
            self.export_logs(self.workdir / "logs")
            self.delete()
            raise
        return self

    def load_image_archive(self, archive: Path) -> None:
        """A docker-archive tarball (devkit.images) into the node's containerd."""
        self.kind("load", "image-archive", str(archive), "--name", self.name, timeout=900)

    def export_logs(self, destination: Path) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.kind("export", "logs", str(destination), "--name", self.name, timeout=300)

    def delete(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.kind("delete", "cluster", "--name", self.name, timeout=300)
        if self.network is not None:
            self.engine.docker("network", "rm", self.network.name, check=False)
            self.engine.networks.remove(self.network)
            self.network = None
        if self.created_modules:
            with contextlib.suppress(OSError):
                MODULES.rmdir()  # empty: docker's mount point only
        for name, value in self.saved_sysctls.items():
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / name).write_text(value)
        self.saved_sysctls = {}
        self._release_host()

    # -- internals -----------------------------------------------------------------------

    def kind(self, *arguments: str, timeout: float) -> str:
        """Run kind against this cluster's engine and network; its stdout."""
        environment = self.engine.env()
        if self.network is not None:
            environment["KIND_EXPERIMENTAL_DOCKER_NETWORK"] = self.network.name
        result = subprocess.run(
            [str(binary("kind")), *arguments],
            capture_output=True,
            text=True,
            env=environment,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"kind {' '.join(arguments)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result.stdout

    def _set_host_sysctls(self) -> None:
        self.saved_sysctls = {name: _read_sysctl(name) for name in KUBELET_SYSCTLS}
        for name, value in KUBELET_SYSCTLS.items():
            (Path("/proc/sys") / name).write_text(value)

    def _claim_host(self) -> None:
        """The local node's claim (devkit.node.claim): one of them on the host at a time."""
        owner = claim_owner()
        if owner is not None:
            if claim_alive(owner):
                raise NodeUnavailable(f"a node runs on this host ({owner.get('workdir')})")
            _clean_stale_claim(owner)  # a dead node's: stopped, its claim removed
        claim_host(self.workdir)
        self.claimed = True

    def _release_host(self) -> None:
        if self.claimed:
            release_host(self.workdir)
        self.claimed = False


@contextlib.contextmanager
def new_kind_cluster(engine: DockerEngine, workdir: Path, image: str) -> Iterator[KindCluster]:
    """A kind cluster for a block; its logs go to ``workdir/logs``, then it is deleted."""
    cluster = KindCluster(engine, workdir, image).create()
    try:
        yield cluster
    finally:
        cluster.export_logs(workdir / "logs")
        cluster.delete()
