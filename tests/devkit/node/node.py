"""The node's lifecycle: start everything in order, stop and remove every trace, and the
state file that lets a later command (``jm-dev cluster down``) or the next node stop it.

The concerns it orders live beside it: the host claim (devkit.node.claim), what changes on
the host and how it is put back (devkit.node.host), the network and its safety rules
(devkit.node.network), containerd and the image store (devkit.node.containerd), and the
Kubernetes processes (devkit.node.components).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from devkit.cluster import ControlPlane, _alive, _terminate
from devkit.node import components
from devkit.node.archives import pause_image_archive
from devkit.node.claim import (
    NodeUnavailable,
    claim_alive,
    claim_host,
    claim_owner,
    release_host,
    update_claim,
    why_no_node,
)
from devkit.node.components import COMPONENT_PORTS
from devkit.node.containerd import Containerd
from devkit.node.host import (
    HOST_CLAIM,
    SHORT_ROOT,
    command_has,
    host_footprint,
    host_leftovers,
    missing_directories,
    read_sysctls,
    restore_host,
    unmount_under,
)
from devkit.node.network import (
    CNI_NETWORK,
    cni_config,
    nft_tables,
    remove_pod_netns,
    setup_network,
    teardown_network,
)
from devkit.ports import (
    PortTaken,
    StartOutput,
    exited_during_start,
    free_port,
    lost_bind,
    start_on_free_ports,
)

log = logging.getLogger(__name__)


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
    def short_dir(self) -> Path:
        """This node's directory under ``SHORT_ROOT``: containerd's socket, kubelet's root."""
        return SHORT_ROOT / hashlib.sha256(str(self.workdir).encode()).hexdigest()[:12]

    @property
    def containerd(self) -> Containerd:
        return Containerd(self.workdir, self.short_dir)

    @property
    def containerd_socket(self) -> Path:
        return self.containerd.socket

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
            self.containerd.adopt_image_store()
            setup_network()
            self._spawn("containerd", self.containerd.command(), clean_env=True)
            self._wait("containerd", self.containerd.ready, deadline)
            self.containerd.import_archive(pause_image_archive(self.workdir))
            for archive in list(self.loaded_images):
                if Path(archive).exists():
                    self.containerd.import_archive(Path(archive))
                else:  # deleted since (a test's image): the next stop prunes it from the store
                    self.loaded_images.remove(archive)
            start_on_free_ports(lambda: self._start_components(deadline), self._repick)
            components.point_kubernetes_service_at_relay(self)
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
        self.containerd.import_archive(archive)
        if str(archive) not in self.loaded_images:
            self.loaded_images.append(str(archive))
            self.save_state()

    def images(self) -> list[str]:
        """References of the images in the node's containerd (the CRI namespace)."""
        return self.containerd.images()

    def allow_registry(self, host: str) -> None:
        """Pods may pull images named ``<host>/...`` from that loopback registry (e.g. one of
        devkit.registry); every other registry stays unreachable."""
        self.containerd.allow_registry(host)

    def forget_registry(self, host: str) -> None:
        """Images named ``<host>/...`` go to the dead port again, and those pulled from there
        are removed (their layers stay while an imported image shares them)."""
        self.containerd.forget_registry(host)
        if self._runs("containerd"):
            pulled = [image for image in self.images() if image.startswith(f"{host}/")]
            if pulled:
                self.containerd.ctr("images", "remove", *pulled, check=False)

    def stop(self) -> None:
        """Stop everything and remove every trace on the host (see devkit.node)."""
        # A dead node's recorded pids may belong to other processes by now: keep only ours.
        marker = str(self.plane.workdir).encode()
        self.pids = {name: pid for name, pid in self.pids.items() if command_has(pid, marker)}
        self._stop_pods()
        for name in ("api-relay", "coredns", "kube-proxy", "kubelet", "kube-scheduler"):
            if name in self.pids:
                _terminate(self.pids.pop(name))
        self._remove_containers()
        if self._runs("containerd"):
            self.containerd.prune_image_store()
        if "containerd" in self.pids:
            _terminate(self.pids.pop("containerd"))
        self.containerd.kill_shims()
        unmount_under(self.workdir)
        unmount_under(self.short_dir)  # kubelet's pod volumes
        self.containerd.keep_image_store()
        remove_pod_netns(self.footprint_before.get("netns", []))
        teardown_network(self.nft_tables_before)
        shutil.rmtree(self.short_dir, ignore_errors=True)
        restore_host(self.saved_sysctls, self.created_directories, self.workdir)
        shutil.rmtree(self.workdir, ignore_errors=True)
        release_host(self.workdir)

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

    # -- the host ----------------------------------------------------------------------------

    def _claim_host(self) -> None:
        owner = claim_owner()
        if owner is not None:
            if claim_alive(owner):
                raise NodeUnavailable(f"another node runs on this host ({owner.get('workdir')})")
            _clean_stale_claim(owner)
        claim_host(self.workdir)

    def _record_host(self) -> None:
        self.footprint_before = host_footprint()
        self.saved_sysctls = read_sysctls()
        self.created_directories = missing_directories()
        self.nft_tables_before = nft_tables()
        (self.workdir).mkdir(parents=True, exist_ok=True)
        self.save_state()

    def _prepare_files(self) -> None:
        for sub in ("manifests", "pod-logs", "cni"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        (self.short_dir / "kubelet").mkdir(parents=True, exist_ok=True)
        self.containerd.write_config(self._cni_dir)
        (self._cni_dir / f"10-{CNI_NETWORK}.conflist").write_text(
            json.dumps(cni_config(self.workdir / "ipam"))
        )
        self._write_component_files()

    def _write_component_files(self) -> None:
        (self.workdir / "kubelet.yaml").write_text(yaml.safe_dump(components.kubelet_config(self)))
        (self.workdir / "Corefile").write_text(components.corefile(self))

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
        update_claim(self.workdir, self.pids)
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

    def _start_components(self, deadline: float) -> None:
        """Start the processes that do not run (all of them, or one that lost its port) and
        wait until the node is Ready and schedulable, the relay listens and DNS answers."""
        for name, command in components.commands(self).items():
            if not self._runs(name):
                self._spawn(name, command)
        for name, ready in components.readiness(self).items():
            self._wait(name, ready, deadline)

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
        self._write_component_files()
        self.save_state()

    # -- stopping ----------------------------------------------------------------------------

    def _stop_pods(self) -> None:
        """Let kubelet stop its pods. The scheduler stops first, so controllers' replacement
        pods stay Pending."""
        if "kube-scheduler" in self.pids:
            _terminate(self.pids.pop("kube-scheduler"))
        if self._runs("kubelet") and self.plane.running():
            components.stop_pods_through_kubelet(self)

    def _remove_containers(self) -> None:
        """Kill and delete whatever containerd still runs.

        A dead node's containerd is started again first: it reconnects to the shims that
        outlived it, so their containers are stopped the same way.
        """
        if not self._runs("containerd"):
            if not self.containerd.has_tasks():
                return
            self._spawn("containerd", self.containerd.command(), clean_env=True)
            try:
                self._wait("containerd", self.containerd.ready, time.monotonic() + 30)
            except (RuntimeError, TimeoutError) as error:
                log.warning("node: containerd of a dead node did not start: %s", error)
                return
        self.containerd.remove_containers()


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
