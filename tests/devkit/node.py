"""A real Kubernetes node beside the local control plane, as local processes.

containerd (its own config, root, state and socket under the node's working directory) runs
the pods with runc; kubelet registers the node; kube-proxy programs Services in iptables
mode; kube-scheduler binds pods; CoreDNS (built with no forward plugin) answers
``cluster.local`` on the node IP. Pods get addresses from a CNI bridge whose gateway is the
node IP.

Nothing here may send a packet off the machine (see the project's network rules):

- pods have no default route (only the Service CIDR, through the node IP);
- on the host, the pod CIDR and the Service CIDR are routed to the bridge, never to the
  default route;
- an nftables table drops every forwarded packet except bridge-to-bridge, so a pod that
  dials an outside address, or a Service whose endpoint is outside, dies on this host;
- containerd sends every registry host to a dead loopback port, so a mistaken pull fails
  at once; every image is loaded from a tarball (``load_image``);
- NodePorts open on the node IP only, and CoreDNS has no upstream.

Pods reach the API server (which listens on loopback) through the ``kubernetes`` Service:
a relay on the node IP (devkit.relay) is its endpoint.

One node runs per host (the bridge, iptables chains and the ``kubepods`` cgroups are
host-wide), claimed in ``HOST_CLAIM``. ``stop()`` removes every process, container, mount,
network namespace, veth, rule, route, cgroup and file it made, and restores the kernel
settings kubelet and the bridge plugin change. Only the images stay: containerd's root (its
content store, unpacked snapshots and image metadata; no container) moves to the cache at
stop and back at the next start (``image_store``), so a node imports an archive only when
its image content changed (importing the demo's 13 images takes about 50 s).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.cluster import (
    SERVICE_CIDR,
    ControlPlane,
    _alive,
    _http_ok,
    _https_ok,
    _terminate,
)
from devkit.kubetools import api_client, wait_for
from devkit.ports import (
    PortTaken,
    StartOutput,
    exited_during_start,
    free_port,
    lost_bind,
    start_on_free_ports,
)
from devkit.toolchain import SETUP_HINT, binary, cache_dir

log = logging.getLogger(__name__)

NODE_NAME = "jm-node"
BRIDGE = "jm-br0"
POD_CIDR = "10.244.0.0/24"
# The bridge's own address: kubelet's node IP (kubelet refuses loopback, and kube-proxy
# programs nothing for a node without an InternalIP) and the address CoreDNS answers on.
NODE_IP = "10.244.0.1"
CNI_NETWORK = "jm-pods"
CNI_BIN_DIR = Path("/usr/lib/cni")
PAUSE_IMAGE = "localhost/jm/pause:1"
PROBE_IMAGE = "localhost/jm/probe:1"
DEAD_REGISTRY = "http://127.0.0.1:9"
NFT_TABLE = "jm_node"
HOST_CLAIM = Path("/run/jm-node.json")
# Short paths for what holds unix sockets (containerd's, kubelet's root dir): a socket path
# has at most 104 bytes, and a pytest temporary directory alone can take 80.
SHORT_ROOT = Path("/var/lib/jm-node")
NETNS_DIR = Path("/run/netns")  # where containerd's CRI puts pod network namespaces
CONTAINERD_NAMESPACE = "k8s.io"
# In containerd's root: reference -> the image config digest and archive it was imported from.
IMPORTED_RECORD = "jm-imported.json"
# In containerd's root: the CRI plugin's per-sandbox and per-container files (no image data).
CRI_ROOT = "io.containerd.grpc.v1.cri"
API_RELAY_SLICE = "kubernetes-node-relay"
# The Node fields that hold each process's ports (containerd's are a socket file and port 0;
# CoreDNS has only the node IP's port 53).
COMPONENT_PORTS = {
    "kube-scheduler": ("scheduler_port",),
    "kubelet": ("kubelet_port",),
    "kube-proxy": ("proxy_healthz_port", "proxy_metrics_port"),
    "api-relay": ("api_relay_port",),
}

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
    owner = _claim_owner()
    if owner is not None and _claim_alive(owner):
        return f"another node runs on this host (working directory {owner.get('workdir')})"
    return None


# -- images ----------------------------------------------------------------------------------


def write_image_archive(
    destination: Path,
    reference: str,
    files: Mapping[str, Path],
    entrypoint: list[str],
) -> Path:
    """A docker-archive tarball of one layer holding ``files`` (path in image -> host file).

    No base image: the programs the node needs for itself (pause) and for its tests (the
    probe) are static binaries, so an image is just them plus a config.
    """
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w") as layer:
        for name, source in sorted(files.items()):
            info = layer.gettarinfo(str(source), arcname=name.lstrip("/"))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            with source.open("rb") as handle:
                layer.addfile(info, handle)
    layer_bytes = layer_buffer.getvalue()
    layer_digest = hashlib.sha256(layer_bytes).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "Env": ["PATH=/"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
        "history": [{"created_by": "devkit.node.write_image_archive"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = f"{hashlib.sha256(config_bytes).hexdigest()}.json"
    manifest = [
        {"Config": config_name, "RepoTags": [reference], "Layers": [f"{layer_digest}/layer.tar"]}
    ]
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(destination, mode="w") as archive:
        for name, data in (
            (f"{layer_digest}/layer.tar", layer_bytes),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return destination


def archive_identity(archive: Path) -> tuple[list[str], str]:
    """A docker-archive's references and its image config's digest (the config names every
    layer by digest, so the same digest is the same image content)."""
    with tarfile.open(archive) as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None, f"{archive} has no manifest.json"
        (manifest,) = json.load(manifest_file)
    return list(manifest["RepoTags"]), str(manifest["Config"]).removesuffix(".json")


def image_store() -> Path:
    """Where a stopped node's containerd root (its images) waits for the next node."""
    return cache_dir() / "node-image-store"


def probe_image_archive(directory: Path) -> Path:
    """The node tests' image: ``jm-probe`` (an HTTP server and client) and nothing else."""
    return write_image_archive(
        directory / "probe.tar", PROBE_IMAGE, {"jm-probe": binary("jm-probe")}, ["/jm-probe"]
    )


# -- the node --------------------------------------------------------------------------------


@dataclass
class Node:
    """containerd + kubelet + kube-proxy + kube-scheduler + CoreDNS for one control plane."""

    plane: ControlPlane
    workdir: Path
    kubelet_port: int = field(default_factory=free_port)
    proxy_healthz_port: int = field(default_factory=free_port)
    proxy_metrics_port: int = field(default_factory=free_port)
    scheduler_port: int = field(default_factory=free_port)
    api_relay_port: int = field(default_factory=free_port)
    pids: dict[str, int] = field(default_factory=dict)
    saved_sysctls: dict[str, str] = field(default_factory=dict)
    created_directories: list[str] = field(default_factory=list)
    nft_tables_before: list[str] | None = None
    footprint_before: dict[str, list[str]] = field(default_factory=dict)
    loaded_images: list[str] = field(default_factory=list)
    # What each process wrote since its last start (not state: only the starter reads it).
    outputs: dict[str, StartOutput] = field(default_factory=dict, repr=False)

    @classmethod
    def for_plane(cls, plane: ControlPlane) -> Node:
        return cls(plane=plane, workdir=plane.workdir / "node")

    # -- paths -------------------------------------------------------------------------------

    @property
    def _short_dir(self) -> Path:
        """This node's directory under ``SHORT_ROOT``: containerd's socket, kubelet's root."""
        return SHORT_ROOT / hashlib.sha256(str(self.workdir).encode()).hexdigest()[:12]

    @property
    def containerd_socket(self) -> Path:
        return self._short_dir / "containerd.sock"

    @property
    def _cni_dir(self) -> Path:
        return self.workdir / "cni"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 120.0) -> Node:
        """Start everything and wait until the node is Ready, schedulable and DNS answers."""
        reason = why_no_node()
        if reason:
            raise NodeUnavailable(reason)
        deadline = time.monotonic() + timeout
        self._claim_host()
        try:
            self._record_host()
            self._prepare_files()
            self._adopt_image_store()
            self._setup_network()
            self._spawn("containerd", self._containerd_command(), clean_env=True)
            self._wait("containerd", self._containerd_ready, deadline)
            self._import(self._pause_archive())
            for archive in list(self.loaded_images):
                if Path(archive).exists():
                    self._import(Path(archive))
                else:  # deleted since (a test's image): the next stop prunes it from the store
                    self.loaded_images.remove(archive)
            start_on_free_ports(lambda: self._start_components(deadline), self._repick)
            self._point_kubernetes_service_at_relay()
        except BaseException:
            self.stop()
            raise
        self.save_state()
        return self

    def load_image(self, archive: Path) -> None:
        """Import a docker-archive tarball into the node's containerd (kept across restarts),
        unless the image store holds its reference with the same content already.

        Pods use it with ``imagePullPolicy: Never`` (or IfNotPresent): nothing is pulled.
        """
        self._import(archive)
        if str(archive) not in self.loaded_images:
            self.loaded_images.append(str(archive))
            self.save_state()

    def images(self) -> list[str]:
        """References of the images in the node's containerd (the CRI namespace)."""
        listing = self._ctr("images", "list", "--quiet")
        return [line for line in listing.splitlines() if line and not line.startswith("sha256:")]

    def stop(self) -> None:
        """Stop everything and remove every trace on the host (see the module docstring)."""
        # A dead node's recorded pids may belong to other processes by now: keep only ours.
        marker = str(self.plane.workdir).encode()
        self.pids = {name: pid for name, pid in self.pids.items() if _command_has(pid, marker)}
        self._stop_pods()
        for name in ("api-relay", "coredns", "kube-proxy", "kubelet", "kube-scheduler"):
            if name in self.pids:
                _terminate(self.pids.pop(name))
        self._remove_containers()
        self._prune_image_store()
        if "containerd" in self.pids:
            _terminate(self.pids.pop("containerd"))
        self._kill_shims()
        _unmount_under(self.workdir)
        _unmount_under(self._short_dir)  # kubelet's pod volumes
        self._keep_image_store()
        # The pods' network namespaces that CNI made since the start (bind-mounted files).
        for name in set(_netns_names()) - set(self.footprint_before.get("netns", [])):
            if name.startswith("cni-"):
                subprocess.run(["umount", "-l", str(NETNS_DIR / name)], capture_output=True)
                with contextlib.suppress(OSError):
                    (NETNS_DIR / name).unlink(missing_ok=True)
        self._teardown_network()
        shutil.rmtree(self._short_dir, ignore_errors=True)
        self._restore_host()
        shutil.rmtree(self.workdir, ignore_errors=True)
        self._release_host()

    def leftovers(self) -> list[str]:
        """What this node left on the host after ``stop()``; empty when it cleaned up."""
        return host_leftovers(self.footprint_before, self.workdir)

    def running(self) -> bool:
        return bool(self.pids) and all(_alive(pid) for pid in self.pids.values())

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # -- state file, for the CLI (`jm-dev cluster up` then a later `down`) -------------------

    def save_state(self) -> None:
        if not self.workdir.is_dir():
            return
        state = {
            name: getattr(self, name)
            for name in self.__dataclass_fields__
            if name not in ("plane", "workdir", "outputs")
        }
        state["workdir"] = str(self.workdir)
        (self.workdir / "state.json").write_text(json.dumps(state))

    @classmethod
    def load_state(cls, plane: ControlPlane, workdir: Path) -> Node:
        data = json.loads((workdir / "state.json").read_text())
        data["workdir"] = Path(data["workdir"])
        # A state written by an older devkit may name ports this one no longer uses.
        return cls(plane=plane, **{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    # -- host claim --------------------------------------------------------------------------

    def _claim_host(self) -> None:
        owner = _claim_owner()
        if owner is not None:
            if _claim_alive(owner):
                raise NodeUnavailable(f"another node runs on this host ({owner.get('workdir')})")
            _clean_stale_claim(owner)
        claim = {"workdir": str(self.workdir), "pid": os.getpid(), "pids": {}}
        try:
            with HOST_CLAIM.open("x") as handle:
                json.dump(claim, handle)
        except FileExistsError as error:
            raise NodeUnavailable("another node is starting on this host") from error

    def _update_claim(self) -> None:
        with contextlib.suppress(OSError):
            owner = json.loads(HOST_CLAIM.read_text())
            if owner.get("workdir") == str(self.workdir):
                owner["pids"] = self.pids
                HOST_CLAIM.write_text(json.dumps(owner))

    def _release_host(self) -> None:
        owner = _claim_owner()
        if owner is not None and owner.get("workdir") == str(self.workdir):
            HOST_CLAIM.unlink(missing_ok=True)

    # -- host settings -----------------------------------------------------------------------

    def _record_host(self) -> None:
        self.footprint_before = host_footprint()
        self.saved_sysctls = {name: _read_sysctl(name) for name in HOST_SYSCTLS}
        self.created_directories = [str(path) for path in HOST_DIRECTORIES if not path.exists()]
        self.nft_tables_before = _nft_tables()
        (self.workdir).mkdir(parents=True, exist_ok=True)
        self.save_state()

    def _restore_host(self) -> None:
        for name, value in self.saved_sysctls.items():
            with contextlib.suppress(OSError):
                (Path("/proc/sys") / name).write_text(value)
        _remove_cgroups("kubepods")
        with contextlib.suppress(OSError):
            for entry in Path("/var/log/containers").iterdir():
                if entry.is_symlink() and str(self.workdir) in os.readlink(entry):
                    entry.unlink()
        results = Path("/var/lib/cni/results")
        if results.is_dir():
            # containerd's CRI sets up each pod's loopback as a network of its own.
            for network in (CNI_NETWORK, "cni-loopback"):
                for entry in results.glob(f"{network}-*"):
                    entry.unlink(missing_ok=True)
        # Deepest first, and only directories this node made that are now empty.
        for directory in sorted(self.created_directories, key=len, reverse=True):
            _remove_empty_tree(Path(directory))

    # -- network -----------------------------------------------------------------------------

    def _setup_network(self) -> None:
        """The bridge (up before any pod: kubelet needs the node IP), routes and the filter.

        This node holds the host claim, so a bridge or table of that name is a dead node's.
        """
        if any(link["ifname"] == BRIDGE for link in _links()):
            _run("ip", "link", "delete", BRIDGE)
        subprocess.run(
            ["nft", "delete", "table", "inet", NFT_TABLE], stderr=subprocess.DEVNULL, check=False
        )
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{NODE_IP}/{POD_CIDR.split('/')[1]}", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        # Host processes reach ClusterIPs through kube-proxy's DNAT, which runs after the
        # first routing decision: the Service CIDR needs a local route, never the default one.
        _run("ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE, "src", NODE_IP)
        ruleset = f"""
table inet {NFT_TABLE} {{
    chain forward {{
        type filter hook forward priority filter - 10; policy accept;
        iifname "{BRIDGE}" oifname != "{BRIDGE}" drop
        oifname "{BRIDGE}" iifname != "{BRIDGE}" drop
    }}
}}
"""
        subprocess.run(["nft", "-f", "-"], input=ruleset, text=True, check=True)

    def _teardown_network(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            subprocess.run(
                [str(binary("kube-proxy")), "--cleanup"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )
        for save, restore in (
            ("iptables-save", "iptables-restore"),
            ("ip6tables-save", "ip6tables-restore"),
        ):
            _drop_kube_chains(save, restore)
        # Tables that appeared while the node ran are its own (iptables-nft makes them for
        # kube-proxy and kubelet); unknown when a dead node's state was lost.
        before = self.nft_tables_before
        if before is not None:
            for table in set(_nft_tables()) - set(before):
                subprocess.run(["nft", "delete", "table", *table.split()], check=False)
        for link in _links(kind="veth"):
            if link.get("master") == BRIDGE:
                _run("ip", "link", "delete", link["ifname"], check=False)
        if any(link["ifname"] == BRIDGE for link in _links()):
            _run("ip", "link", "delete", BRIDGE, check=False)  # its routes go with it
        subprocess.run(
            ["nft", "delete", "table", "inet", NFT_TABLE],
            stderr=subprocess.DEVNULL,
            check=False,
        )

    # -- configuration files -----------------------------------------------------------------

    def _prepare_files(self) -> None:
        for sub in ("containerd", "manifests", "pod-logs", "cni", "registry/_default"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        (self._short_dir / "kubelet").mkdir(parents=True, exist_ok=True)
        # Every registry host resolves to a dead loopback port: nothing is ever pulled.
        # containerd 1.6 ignores a hosts.toml without a [host] table (and then dials the
        # image's own registry), so the dead endpoint is named twice.
        (self.workdir / "registry" / "_default" / "hosts.toml").write_text(
            f'server = "{DEAD_REGISTRY}"\n'
            f'[host."{DEAD_REGISTRY}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
        )
        (self.workdir / "containerd.toml").write_text(self._containerd_config())
        (self._cni_dir / f"10-{CNI_NETWORK}.conflist").write_text(json.dumps(self._cni_config()))
        (self.workdir / "kubelet.yaml").write_text(yaml.safe_dump(self._kubelet_config()))
        (self.workdir / "Corefile").write_text(self._corefile())

    def _containerd_config(self) -> str:
        state = self.workdir / "containerd"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{state / "root"}"
state = "{state / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.containerd_socket}"
[ttrpc]
  address = "{self.containerd_socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{state / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  # Root here may not lower oom_score_adj; without this every sandbox fails to start.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  BinaryName = "{shutil.which("runc")}"
  Root = "{self.workdir / "runc"}"
  SystemdCgroup = false
[{cri}.cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{self._cni_dir}"
  max_conf_num = 1
[{cri}.registry]
  config_path = "{self.workdir / "registry"}"
"""

    def _cni_config(self) -> dict[str, object]:
        return {
            "cniVersion": "0.4.0",
            "name": CNI_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": BRIDGE,
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                        # Pods get no default route: only the Service CIDR through the
                        # node; the pod CIDR is on the link. Anything else is unreachable
                        # inside the pod already.
                        "routes": [{"dst": SERVICE_CIDR, "gw": NODE_IP}],
                        "dataDir": str(self.workdir / "ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "loopback"},
            ],
        }

    def _kubelet_config(self) -> dict[str, object]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failCgroupV1": False,  # this host has cgroup v1 (hybrid)
            "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "staticPodPath": str(self.workdir / "manifests"),
            "podLogsDir": str(self.workdir / "pod-logs"),
            "clusterDomain": "cluster.local",
            "clusterDNS": [NODE_IP],
            "resolvConf": "",
            "address": NODE_IP,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            # No healthz server: nothing reads it, and kubelet does not exit when its port is
            # taken (it retries every 5 s), so a lost port would go unnoticed.
            "healthzPort": 0,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(self.plane.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "failSwapOn": False,
            "enforceNodeAllocatable": [],
            "evictionHard": {},
            # True (the default): the node reports ephemeral-storage capacity, so pods that
            # request it (our exporters and operator do) can be scheduled.
            "localStorageCapacityIsolation": True,
            "makeIPTablesUtilChains": False,
            "serializeImagePulls": False,
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "nodeStatusUpdateFrequency": "5s",
            "syncFrequency": "10s",
        }

    def _corefile(self) -> str:
        return f"""cluster.local:53 {{
    bind {NODE_IP}
    errors
    cache 5
    kubernetes cluster.local {{
        kubeconfig {self.plane.kubeconfig}
    }}
}}
"""

    # -- commands ----------------------------------------------------------------------------

    def _containerd_command(self) -> list[str]:
        return [str(binary("containerd")), "--config", str(self.workdir / "containerd.toml")]

    def _kubelet_command(self) -> list[str]:
        return [
            str(binary("kubelet")),
            f"--config={self.workdir / 'kubelet.yaml'}",
            f"--kubeconfig={self.plane.kubeconfig}",
            f"--root-dir={self._short_dir / 'kubelet'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            "--v=0",
        ]

    def _proxy_command(self) -> list[str]:
        return [
            str(binary("kube-proxy")),
            f"--kubeconfig={self.plane.kubeconfig}",
            f"--hostname-override={NODE_NAME}",
            "--proxy-mode=iptables",
            f"--cluster-cidr={POD_CIDR}",
            f"--nodeport-addresses={NODE_IP}/32",
            f"--healthz-bind-address=127.0.0.1:{self.proxy_healthz_port}",
            f"--metrics-bind-address=127.0.0.1:{self.proxy_metrics_port}",
            # Exit when a port is taken (it would retry in the background), so the start
            # chooses fresh ports instead (devkit.ports).
            "--bind-address-hard-fail",
            # Leave the host's conntrack settings alone.
            "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0",
            "--conntrack-tcp-timeout-close-wait=0",
            "--v=0",
        ]

    def _scheduler_command(self) -> list[str]:
        kubeconfig = str(self.plane.kubeconfig)
        return [
            str(binary("kube-scheduler")),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.scheduler_port}",
            "--leader-elect=false",
            "--v=0",
        ]

    def _coredns_command(self) -> list[str]:
        return [str(binary("coredns")), "-conf", str(self.workdir / "Corefile")]

    def _relay_command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "devkit.relay",
            NODE_IP,
            str(self.api_relay_port),
            "127.0.0.1",
            str(self.plane.apiserver_port),
            f"--owner={self.workdir}",
        ]

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str, command: list[str], clean_env: bool = False) -> None:
        """Start ``command`` in its own session, logging to ``<workdir>/<name>.log``.

        containerd gets an environment without proxy settings, so nothing it does can be
        routed through a proxy to the outside.
        """
        environment = None
        if clean_env:
            environment = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
        self.outputs[name] = StartOutput(self.workdir / f"{name}.log")
        log_file = self.outputs[name].log.open("ab")
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=environment,
        )
        log_file.close()
        self.pids[name] = process.pid
        self._update_claim()
        self.save_state()

    def _wait(self, name: str, ready: Callable[[], bool], deadline: float) -> None:
        while time.monotonic() < deadline:
            for process, pid in self.pids.items():
                if not _alive(pid):
                    raise exited_during_start(process, self._output(process))
            if ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"{name} not ready in time:\n{self.log_tail(name)}")

    def _runs(self, name: str) -> bool:
        return name in self.pids and _alive(self.pids[name])

    def _output(self, name: str) -> str:
        started = self.outputs.get(name)
        return started.text() if started else self.log_tail(name)

    def _components(self) -> dict[str, Callable[[], list[str]]]:
        """The node's processes beside containerd, by name: their command lines."""
        return {
            "kube-scheduler": self._scheduler_command,
            "kubelet": self._kubelet_command,
            "kube-proxy": self._proxy_command,
            "coredns": self._coredns_command,
            "api-relay": self._relay_command,
        }

    def _start_components(self, deadline: float) -> None:
        """Start the processes that do not run (all of them, or one that lost its port) and
        wait until the node is Ready and schedulable, the relay listens and DNS answers."""
        for name, command in self._components().items():
            if not self._runs(name):
                self._spawn(name, command())
        self._wait("kubelet", self._ready_and_schedulable, deadline)
        # Through the relay to the API server (whatever else listens there answers no TLS).
        self._wait(
            "api-relay",
            lambda: _https_ok(f"https://{NODE_IP}:{self.api_relay_port}/healthz"),
            deadline,
        )
        self._wait("coredns", _cluster_dns_answers, deadline)
        self._wait(
            "kube-scheduler",
            lambda: _https_ok(f"https://127.0.0.1:{self.scheduler_port}/healthz"),
            deadline,
        )
        self._wait(
            "kube-proxy",
            lambda: _http_ok(f"http://127.0.0.1:{self.proxy_healthz_port}/livez"),
            deadline,
        )

    def _repick(self, error: PortTaken) -> None:
        """Fresh ports for the processes that lost one (they have exited: ``error``'s, and
        any other that started beside it), in what names them."""
        if error.what not in COMPONENT_PORTS:
            raise error
        lost = [
            name
            for name in COMPONENT_PORTS
            if name == error.what or (not self._runs(name) and lost_bind(self._output(name)))
        ]
        for name in lost:
            for port in COMPONENT_PORTS[name]:
                setattr(self, port, free_port())
        (self.workdir / "kubelet.yaml").write_text(yaml.safe_dump(self._kubelet_config()))
        (self.workdir / "Corefile").write_text(self._corefile())
        self.save_state()

    def _ctr(self, *arguments: str, check: bool = True) -> str:
        result = subprocess.run(
            [
                str(binary("ctr")),
                "--address",
                str(self.containerd_socket),
                "--namespace",
                CONTAINERD_NAMESPACE,
                *arguments,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(arguments)} failed: {result.stderr.strip()}")
        return result.stdout

    def _containerd_ready(self) -> bool:
        if not self.containerd_socket.exists():
            return False
        try:
            self._ctr("version")
        except RuntimeError:
            return False
        return True

    def _import(self, archive: Path) -> None:
        references, config = archive_identity(archive)
        imported = self._imported()
        present = set(self.images())
        if all(
            reference in present and imported.get(reference, {}).get("config") == config
            for reference in references
        ):
            log.info("node: %s is in the image store already", archive.name)
        else:
            started = time.monotonic()
            self._ctr("images", "import", "--no-unpack=false", str(archive))
            log.info("node: imported %s in %.1fs", archive.name, time.monotonic() - started)
        for reference in references:  # the archive it would come from now (see prune)
            imported[reference] = {"config": config, "archive": str(archive)}
        (self._containerd_root / IMPORTED_RECORD).write_text(json.dumps(imported, indent=1))

    # -- the image store, kept in the cache between nodes -------------------------------------

    @property
    def _containerd_root(self) -> Path:
        return self.workdir / "containerd" / "root"

    def _imported(self) -> dict[str, dict[str, str]]:
        """What this containerd root holds, by reference (see ``IMPORTED_RECORD``)."""
        try:
            record: dict[str, dict[str, str]] = json.loads(
                (self._containerd_root / IMPORTED_RECORD).read_text()
            )
        except (OSError, ValueError):
            return {}
        return record

    def _adopt_image_store(self) -> None:
        """Take the image store from the cache as this node's containerd root (a rename: one
        node runs per host, so no other node uses it meanwhile). Without one, or if it cannot
        move here, containerd starts empty and imports everything."""
        store = image_store()
        if store.is_dir() and not self._containerd_root.exists():
            self._containerd_root.parent.mkdir(parents=True, exist_ok=True)
            try:
                store.rename(self._containerd_root)
            except OSError as error:
                log.warning("node: image store %s not used: %s", store, error)

    def _prune_image_store(self) -> None:
        """Remove the images whose archive is gone (an older version, a test's image), so the
        store holds what could be loaded again and does not grow with every version."""
        if not _alive(self.pids.get("containerd", 0)):
            return
        imported = self._imported()
        gone = [ref for ref, entry in imported.items() if not Path(entry["archive"]).exists()]
        if not gone:
            return
        self._ctr("images", "remove", *gone, check=False)
        for reference in gone:
            del imported[reference]
        (self._containerd_root / IMPORTED_RECORD).write_text(json.dumps(imported, indent=1))

    def _keep_image_store(self) -> None:
        """Move containerd's root to the cache once containerd and its shims are gone; its
        CRI files (sandboxes, containers) are this node's and go with it."""
        if not (self._containerd_root / IMPORTED_RECORD).is_file():
            return
        shutil.rmtree(self._containerd_root / CRI_ROOT, ignore_errors=True)
        store = image_store()
        shutil.rmtree(store, ignore_errors=True)
        store.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._containerd_root.rename(store)
        except OSError as error:
            log.warning("node: image store not kept in %s: %s", store, error)

    def _pause_archive(self) -> Path:
        return write_image_archive(
            self.workdir / "pause.tar", PAUSE_IMAGE, {"pause": binary("jm-pause")}, ["/pause"]
        )

    def _ready_and_schedulable(self) -> bool:
        """Ready, then untainted: no node lifecycle controller removes the not-ready taint."""
        core = client.CoreV1Api(api_client(self.plane.kubeconfig))
        try:
            node = core.read_node(NODE_NAME)
        except ApiException:
            return False
        ready = any(
            condition.type == "Ready" and condition.status == "True"
            for condition in (node.status.conditions or [])
        )
        if not ready:
            return False
        taints = node.spec.taints or []
        if any(taint.key == "node.kubernetes.io/not-ready" for taint in taints):
            kept = [taint for taint in taints if taint.key != "node.kubernetes.io/not-ready"]
            core.patch_node(NODE_NAME, {"spec": {"taints": kept or None}})
            return False
        return True

    def _point_kubernetes_service_at_relay(self) -> None:
        """Give the ``kubernetes`` Service an endpoint pods can reach: the relay.

        The API server cannot publish its own (127.0.0.1 is no valid endpoint). This slice
        has a name and manager of its own, so no controller of the plane touches it.
        """
        discovery = client.DiscoveryV1Api(api_client(self.plane.kubeconfig))
        slice_ = client.V1EndpointSlice(
            metadata=client.V1ObjectMeta(
                name=API_RELAY_SLICE,
                labels={
                    "kubernetes.io/service-name": "kubernetes",
                    "endpointslice.kubernetes.io/managed-by": "jewelry-monitoring.devkit.node",
                },
            ),
            address_type="IPv4",
            endpoints=[
                client.V1Endpoint(
                    addresses=[NODE_IP], conditions=client.V1EndpointConditions(ready=True)
                )
            ],
            ports=[client.DiscoveryV1EndpointPort(name="https", port=self.api_relay_port)],
        )
        with contextlib.suppress(ApiException):
            discovery.delete_namespaced_endpoint_slice(API_RELAY_SLICE, "default")
        discovery.create_namespaced_endpoint_slice("default", slice_)

    # -- stopping ----------------------------------------------------------------------------

    def _stop_pods(self) -> None:
        """Let kubelet stop its pods: sandboxes torn down through CNI, volumes unmounted.

        The scheduler stops first, so controllers' replacement pods stay Pending.
        """
        if "kube-scheduler" in self.pids:
            _terminate(self.pids.pop("kube-scheduler"))
        if not _alive(self.pids.get("kubelet", 0)) or not self.plane.running():
            return
        core = client.CoreV1Api(api_client(self.plane.kubeconfig))
        selector = f"spec.nodeName={NODE_NAME}"
        try:
            with contextlib.suppress(ApiException):
                client.DiscoveryV1Api(core.api_client).delete_namespaced_endpoint_slice(
                    API_RELAY_SLICE, "default"
                )
            for pod in core.list_pod_for_all_namespaces(field_selector=selector).items:
                with contextlib.suppress(ApiException):
                    core.delete_namespaced_pod(
                        pod.metadata.name, pod.metadata.namespace, grace_period_seconds=1
                    )
            wait_for(
                lambda: not core.list_pod_for_all_namespaces(field_selector=selector).items,
                timeout=60,
                what="kubelet to stop the node's pods",
            )
        except (ApiException, TimeoutError, OSError) as error:
            log.warning("node: pods not stopped through kubelet (%s); killing them", error)

    def _remove_containers(self) -> None:
        """Kill and delete whatever containerd still runs.

        A dead node's containerd is started again first: it reconnects to the shims that
        outlived it, so their containers are stopped the same way.
        """
        tasks = self.workdir / "containerd" / "state" / "io.containerd.runtime.v2.task"
        if not _alive(self.pids.get("containerd", 0)):
            if not any(tasks.glob("*/*")):
                return
            self._spawn("containerd", self._containerd_command(), clean_env=True)
            try:
                self._wait("containerd", self._containerd_ready, time.monotonic() + 30)
            except (RuntimeError, TimeoutError) as error:
                log.warning("node: containerd of a dead node did not start: %s", error)
                return
        try:
            for container in self._ctr("containers", "list", "--quiet").split():
                self._ctr("tasks", "delete", "--force", container, check=False)
                self._ctr("containers", "delete", container, check=False)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            log.warning("node: containerd cleanup incomplete: %s", error)

    def _kill_shims(self) -> None:
        """Shims outlive containerd by design; end the ones serving this node's containerd."""
        marker = str(self.containerd_socket).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes()
                if b"containerd-shim" in command and marker in command:
                    _terminate(int(entry.name), grace=2.0)


# -- host helpers ----------------------------------------------------------------------------


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
    links = [f"{link['ifname']} ({link.get('link_type', '')})" for link in _links()]
    routes = subprocess.run(
        ["ip", "route", "show", "table", "all"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    ruleset = subprocess.run(
        ["nft", "list", "ruleset"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    netns = _netns_names()
    files = [
        str(path)
        for directory in (*HOST_DIRECTORIES, Path("/var/lib/cni/results"))
        for path in ([directory, *directory.iterdir()] if directory.is_dir() else [])
    ]
    return {
        "mount": sorted(mounts),
        "link": sorted(links),
        "route": sorted(routes),
        "nft": sorted(line.strip() for line in ruleset if line.strip()),
        "netns": netns,
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


def _cluster_dns_answers(name: str = "kubernetes.default.svc.cluster.local") -> bool:
    """Whether CoreDNS on the node IP answers an A query for ``name`` (its kubernetes plugin
    has synced). Asked in DNS itself: CoreDNS's ``ready`` plugin would need a port of its
    own, and keeps running silently without its endpoint when another process took it."""
    query_id = random.randrange(1 << 16)
    labels = b"".join(bytes([len(label)]) + label.encode() for label in name.split("."))
    # Header: id, flags (recursion desired), one question; the question: name, A, IN.
    query = struct.pack("!HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + labels + b"\0"
    query += struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as resolver:
        resolver.settimeout(1)
        try:
            resolver.sendto(query, (NODE_IP, 53))
            reply = resolver.recv(512)
        except OSError:
            return False
    if len(reply) < 8:
        return False
    reply_id, flags, _, answers = struct.unpack("!HHHH", reply[:8])
    return reply_id == query_id and flags & 0x000F == 0 and answers > 0


def _command_has(pid: int, marker: bytes) -> bool:
    """Whether process ``pid`` runs and names ``marker`` on its command line."""
    try:
        return marker in Path(f"/proc/{pid}/cmdline").read_bytes() and _alive(pid)
    except OSError:
        return False


def _netns_names() -> list[str]:
    return sorted(path.name for path in NETNS_DIR.glob("*"))


def _run(*command: str, check: bool = True) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")


def _read_sysctl(name: str) -> str:
    return (Path("/proc/sys") / name).read_text().strip()


def _links(kind: str | None = None) -> list[dict[str, str]]:
    command = ["ip", "-json", "link", "show"]
    if kind:
        command += ["type", kind]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    links: list[dict[str, str]] = json.loads(result.stdout or "[]")
    return links


def _nft_tables() -> list[str]:
    """``family name`` of every nftables table (iptables-nft keeps its rules in them too)."""
    result = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=False)
    return [line.removeprefix("table ").strip() for line in result.stdout.splitlines() if line]


def _drop_kube_chains(save: str, restore: str) -> None:
    """Remove every KUBE-* chain and every rule naming one, leaving other rules alone."""
    dumped = subprocess.run([save], capture_output=True, text=True, check=False).stdout
    if "KUBE-" not in dumped:
        return
    kept = "\n".join(line for line in dumped.splitlines() if "KUBE-" not in line) + "\n"
    subprocess.run([restore], input=kept, text=True, capture_output=True, check=False)


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


def _unmount_under(root: Path) -> None:
    """Unmount everything at or below ``root``, deepest first."""
    for target in sorted(_mounts_under(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def kubepods_cgroups(name: str = "kubepods") -> list[Path]:
    """The ``name`` cgroup directories under every hierarchy (v1 controllers and unified)."""
    if not CGROUP_ROOT.is_dir():
        return []
    return [hierarchy / name for hierarchy in CGROUP_ROOT.iterdir() if (hierarchy / name).is_dir()]


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


def _claim_owner() -> dict[str, object] | None:
    try:
        owner: dict[str, object] = json.loads(HOST_CLAIM.read_text())
    except (OSError, ValueError):
        return None
    return owner


def _claim_alive(owner: Mapping[str, object]) -> bool:
    pids = owner.get("pids")
    candidates = list(pids.values()) if isinstance(pids, dict) else []
    starter = owner.get("pid")
    if not candidates and isinstance(starter, int):
        candidates = [starter]  # still starting: its starter process is the owner
    return any(isinstance(pid, int) and _alive(pid) for pid in candidates)


def _clean_stale_claim(owner: Mapping[str, object]) -> None:
    """A node whose processes all died (killed test run): undo what its state file records."""
    workdir = Path(str(owner.get("workdir")))
    state = workdir / "state.json"
    if state.is_file():
        log.warning("node: cleaning up a dead node in %s", workdir)
        plane = ControlPlane(workdir=workdir.parent)
        node = Node.load_state(plane, workdir)
        node.stop()
    HOST_CLAIM.unlink(missing_ok=True)
