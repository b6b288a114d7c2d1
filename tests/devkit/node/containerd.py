"""The node's containerd: its configuration, its client, and the image store.

containerd runs with a configuration, root, state and socket of its own under the node's
working directory, runs pods with runc, and sends every registry host to a dead loopback
port, so a mistaken pull fails at once: every image is imported from a tarball.

Only the images outlive a node: containerd's root (its content store, unpacked snapshots and
image metadata; no container) moves to the cache at stop and back at the next start
(``image_store``), so a node imports an archive only when its image content changed
(importing the demo's 13 images takes about 50 s). ``IMPORTED_RECORD`` in the root says which
archive and image content each reference came from.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from devkit.cluster import _terminate
from devkit.node.archives import PAUSE_IMAGE, archive_identity
from devkit.node.network import CNI_BIN_DIR
from devkit.toolchain import binary, cache_dir

log = logging.getLogger(__name__)

DEAD_REGISTRY = "http://127.0.0.1:9"
CONTAINERD_NAMESPACE = "k8s.io"
# In containerd's root: reference -> the image config digest and archive it was imported from.
IMPORTED_RECORD = "jm-imported.json"
# In containerd's root: the CRI plugin's per-sandbox and per-container files (no image data).
CRI_ROOT = "io.containerd.grpc.v1.cri"


LOOPBACK_ADDRESSES = ("127.0.0.1", "localhost")


def _hosts_toml(endpoint: str) -> str:
    """containerd's registry host file sending pulls to ``endpoint``. containerd 1.6 ignores
    one without a [host] table (and then dials the image's own registry), so the endpoint
    is named twice."""
    return f'server = "{endpoint}"\n[host."{endpoint}"]\n  capabilities = ["pull", "resolve"]\n'


def image_store() -> Path:
    """Where a stopped node's containerd root (its images) waits for the next node."""
    return cache_dir() / "node-image-store"


@dataclass(frozen=True)
class Containerd:
    """containerd of the node in ``workdir``; its sockets in ``short_dir`` (a socket path has
    at most 104 bytes)."""

    workdir: Path
    short_dir: Path

    @property
    def socket(self) -> Path:
        return self.short_dir / "containerd.sock"

    @property
    def root(self) -> Path:
        return self.workdir / "containerd" / "root"

    @property
    def _config_file(self) -> Path:
        return self.workdir / "containerd.toml"

    def write_config(self, cni_dir: Path) -> None:
        """Its configuration, and registry hosts that send every pull to a dead port."""
        (self.workdir / "containerd").mkdir(parents=True, exist_ok=True)
        (self.workdir / "registry" / "_default").mkdir(parents=True, exist_ok=True)
        # Every registry host resolves to a dead loopback port: nothing is ever pulled
        # (but from the registries ``allow_registry`` names).
        (self.workdir / "registry" / "_default" / "hosts.toml").write_text(
            _hosts_toml(DEAD_REGISTRY)
        )
        self._config_file.write_text(self._config(cni_dir))

    def allow_registry(self, host: str) -> None:
        """Let the images named ``<host>/...`` be pulled from the registry there (plain HTTP,
        loopback only: a registry on this machine). containerd reads its registry hosts at
        each pull, so this takes effect at once; other names still go to the dead port."""
        address = host.rsplit(":", 1)[0]
        if address not in LOOPBACK_ADDRESSES:
            raise ValueError(f"{host}: the node pulls only from a registry on loopback")
        directory = self.workdir / "registry" / host
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "hosts.toml").write_text(_hosts_toml(f"http://{host}"))

    def forget_registry(self, host: str) -> None:
        """Images named ``<host>/...`` are pulled from nowhere again."""
        shutil.rmtree(self.workdir / "registry" / host, ignore_errors=True)

    def _config(self, cni_dir: Path) -> str:
        state = self.workdir / "containerd"
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""version = 2
root = "{state / "root"}"
state = "{state / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"

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
  conf_dir = "{cni_dir}"
  max_conf_num = 1
[{cri}.registry]
  config_path = "{self.workdir / "registry"}"
"""

    def command(self) -> list[str]:
        return [str(binary("containerd")), "--config", str(self._config_file)]

    def ctr(self, *arguments: str, check: bool = True) -> str:
        result = subprocess.run(
            [
                str(binary("ctr")),
                "--address",
                str(self.socket),
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

    def ready(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            self.ctr("version")
        except RuntimeError:
            return False
        return True

    def images(self) -> list[str]:
        """References of the images in the CRI namespace."""
        listing = self.ctr("images", "list", "--quiet")
        return [line for line in listing.splitlines() if line and not line.startswith("sha256:")]

    def import_archive(self, archive: Path) -> None:
        """Import a docker-archive, unless its references are here with the same content."""
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
            self.ctr("images", "import", "--no-unpack=false", str(archive))
            log.info("node: imported %s in %.1fs", archive.name, time.monotonic() - started)
        for reference in references:  # the archive it would come from now (see prune)
            imported[reference] = {"config": config, "archive": str(archive)}
        (self.root / IMPORTED_RECORD).write_text(json.dumps(imported, indent=1))

    def has_tasks(self) -> bool:
        """Whether containers of this containerd may still run (its shims outlive it)."""
        tasks = self.workdir / "containerd" / "state" / "io.containerd.runtime.v2.task"
        return any(tasks.glob("*/*"))

    def remove_containers(self) -> None:
        """Kill and delete every container of the running containerd."""
        try:
            for container in self.ctr("containers", "list", "--quiet").split():
                self.ctr("tasks", "delete", "--force", container, check=False)
                self.ctr("containers", "delete", container, check=False)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            log.warning("node: containerd cleanup incomplete: %s", error)

    def kill_shims(self) -> None:
        """Shims outlive containerd by design; end the ones serving this containerd."""
        marker = str(self.socket).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes()
                if b"containerd-shim" in command and marker in command:
                    _terminate(int(entry.name), grace=2.0)

    # -- the image store, kept in the cache between nodes -------------------------------------

    def _imported(self) -> dict[str, dict[str, str]]:
        """What this containerd root holds, by reference (see ``IMPORTED_RECORD``)."""
        try:
            record: dict[str, dict[str, str]] = json.loads(
                (self.root / IMPORTED_RECORD).read_text()
            )
        except (OSError, ValueError):
            return {}
        return record

    def adopt_image_store(self) -> None:
        """Take the image store from the cache as this containerd's root (a rename: one node
        runs per host, so no other node uses it meanwhile). Without one, or if it cannot
        move here, containerd starts empty and imports everything."""
        store = image_store()
        if store.is_dir() and not self.root.exists():
            self.root.parent.mkdir(parents=True, exist_ok=True)
            try:
                store.rename(self.root)
            except OSError as error:
                log.warning("node: image store %s not used: %s", store, error)

    def prune_image_store(self) -> None:
        """Remove the images whose archive is gone (an older version, a test's image), so the
        store holds what could be loaded again and does not grow with every version. Only
        while containerd runs."""
        imported = self._imported()
        gone = [ref for ref, entry in imported.items() if not Path(entry["archive"]).exists()]
        if not gone:
            return
        self.ctr("images", "remove", *gone, check=False)
        for reference in gone:
            del imported[reference]
        (self.root / IMPORTED_RECORD).write_text(json.dumps(imported, indent=1))

    def keep_image_store(self) -> None:
        """Move the root to the cache once containerd and its shims are gone; its CRI files
        (sandboxes, containers) are this node's and go with it."""
        if not (self.root / IMPORTED_RECORD).is_file():
            return
        shutil.rmtree(self.root / CRI_ROOT, ignore_errors=True)
        store = image_store()
        shutil.rmtree(store, ignore_errors=True)
        store.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.root.rename(store)
        except OSError as error:
            log.warning("node: image store not kept in %s: %s", store, error)
