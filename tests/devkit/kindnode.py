"""The kind node image, made on this machine: nothing of it is pulled or downloaded.

``kind build node-image --base-image <ours> --type file <server tarball of ours>`` (kind
v0.30, built by setup) makes it in our Docker engine (devkit.dockerd) from:

* **a base image of our own** (``kind-base``): Debian bookworm's packages (systemd, runc,
  the CNI plugins, iptables...) by mmdebstrap, plus the files of
  tests/toolchain/kind/node-image/rootfs: our entrypoint, containerd's unit and
  configuration (our pause image; every registry sent to a dead loopback port), the
  kubelet's systemd unit with kubeadm's drop-in, and a bridge CNI configuration for the
  pods. Units that would act beyond the container (sysctl, binfmt, kernel modules, udev,
  timers) are masked. containerd itself is setup's build at kind's version (2.1.4): kind's
  ``build node-image`` runs containerd 2's ``ctr`` (``ctr info``, ``images import
  --label``), which bookworm's containerd 1.6 lacks.
* **a Kubernetes server tarball** in the layout kind reads: kubeadm, kubelet and kubectl
  of setup's Kubernetes build, and image archives of kube-apiserver,
  kube-controller-manager, kube-scheduler and kube-proxy made from the same build.
* **every other image kubeadm and kind name** (``kubeadm config images list`` and kind's
  own), made here and carried in the tarball's kube-proxy archive, which kind imports
  whole. Its ``repositories`` entry comes first, so kind counts every image in it as built
  and pulls none: etcd and CoreDNS at kubeadm's versions (setup builds both from their
  modules), our pause, local-path-provisioner at kind's version with its helper (Debian's
  sh, mkdir and rm), and, under kindnetd's name, a placeholder that says why it is one:
  kindnetd's module is not in the Go module proxy. Clusters of this image therefore set
  ``networking.disableDefaultCNI`` and use the bridge CNI (devkit.kindcluster).

Each piece is an image recipe of devkit.images, with its own storage and tarballs under
``<cache>/kind-node``, rebuilt only when its inputs change. The node image is saved there
as a docker-archive too, keyed by the hash of all it is made from, so an engine loads it
instead of building it again.

    node_image(engine, progress) -> str   # loaded into the engine; its name
"""

from __future__ import annotations

import gzip
import io
import json
import re
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from devkit.dockerd import DockerEngine
from devkit.images import (
    Builder,
    Recipe,
    _debian_rootfs,
    _digest,
    _linked_libraries,
    archive_manifest,
    build_lock,
)
from devkit.toolchain import binary, built_binary, cache_dir

REPO = Path(__file__).resolve().parents[2]
KIND_TOOLCHAIN = REPO / "tests" / "toolchain" / "kind"
NODE_ROOTFS = KIND_TOOLCHAIN / "node-image" / "rootfs"
KUBE_GO_MOD = REPO / "tests" / "toolchain" / "kube" / "go.mod"
NODE_IMAGE_REPOSITORY = "localhost/jm/kind-node"
ARCH = "amd64"

# Names kind v0.30's `build node-image` requires besides kubeadm's images
# (pkg/build/nodeimage/const_cni.go, const_storage.go), and our pause image (containerd's
# sandbox_image in node-image/rootfs, which kind reads from there).
KINDNETD_TAG = "docker.io/kindest/kindnetd:v20250512-df8de77b"
LOCAL_PATH_PROVISIONER_TAG = "docker.io/kindest/local-path-provisioner:v20250214-acbabc1a"
LOCAL_PATH_HELPER_TAG = "docker.io/kindest/local-path-helper:v20241212-8ac705d0"
PAUSE_TAG = "localhost/jm/pause:1"

# The base image's Debian packages: what kind's own base installs that a node here uses.
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "nftables",
    "conntrack",
    "iproute2",
    "ethtool",
    "util-linux",
    "mount",
    "kmod",
    "procps",
    "bash",
    "ca-certificates",
    "libseccomp2",
)
# containerd at kind's version (setup builds it): kind's `build node-image` runs
# containerd 2's ctr, which bookworm's containerd 1.6 lacks (`ctr info`, import --label).
CONTAINERD_PROGRAMS = ("containerd", "containerd-shim-runc-v2", "ctr")
# Units that act beyond the container (host-wide sysctls, binfmt, kernel modules, devices)
# or have nothing to do in a node (timers, consoles): masked.
MASKED_UNITS = (
    "systemd-sysctl.service",
    "systemd-binfmt.service",
    "proc-sys-fs-binfmt_misc.automount",
    "systemd-modules-load.service",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-random-seed.service",
    "systemd-pstore.service",
    "systemd-remount-fs.service",
    "systemd-firstboot.service",
    "systemd-hwdb-update.service",
    "kmod-static-nodes.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "sys-kernel-config.mount",
    "sys-fs-fuse-connections.mount",
    "getty@tty1.service",
    "console-getty.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
)
BASE_HOOKS = (
    f'sync-in "{NODE_ROOTFS}" /',  # our files, before the units they add are enabled
    'chroot "$1" systemctl enable containerd.service kubelet.service',
    f'chroot "$1" systemctl mask {" ".join(MASKED_UNITS)}',
    'chroot "$1" systemctl set-default multi-user.target',
    # journald may not read the host's kernel log; an empty machine-id is made at boot.
    'echo "ReadKMsg=no" >> "$1/etc/systemd/journald.conf"',
    ': > "$1/etc/machine-id"',
    'mkdir -p "$1/etc/kubernetes/manifests"',
)
BASE_CONFIG = (
    "--env",
    "container=docker",
    "--stop-signal",
    "SIGRTMIN+3",
    "--entrypoint",
    '["/usr/local/bin/entrypoint", "/sbin/init"]',
    "--cmd",
    "",
)
# kube-proxy's iptables mode runs iptables (nft), conntrack and nft.
KUBE_PROXY_PACKAGES = ("iptables", "nftables", "conntrack", "kmod")
COMMAND_PATH = "/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
KINDNETD_PLACEHOLDER = b"""This image only stands in for kind's kindnetd, under its name, so that
`kind build node-image` finds every image it names and pulls none. kindnetd's Go module
(sigs.k8s.io/kind/images/kindnetd) is not in the Go module proxy, so it cannot be built on
the machines of jewelry-monitoring's tests. Clusters of this node image set
networking.disableDefaultCNI and use the bridge CNI of /etc/cni/net.d; a container of this
image fails at once: /bin/kindnetd does not exist.
"""

Progress = Callable[[str], None]


class NodeImageError(RuntimeError):
    """A piece of the node image cannot be made; the message says which and why."""


def kube_version() -> str:
    """The Kubernetes version setup builds (``require k8s.io/kubernetes vX`` of its go.mod)."""
    return _required_version(KUBE_GO_MOD, "k8s.io/kubernetes")


def _required_version(go_mod: Path, module: str) -> str:
    found = re.search(rf"^\s*(?:require )?{re.escape(module)} (v\S+)$", go_mod.read_text(), re.M)
    if not found:
        raise NodeImageError(f"{go_mod} does not require {module}")
    return found[1]


def kind_program(name: str) -> Path:
    """A program setup builds for the node image only (``<cache>/bin/kind-node/<name>``),
    with JM_SETUP_KIND=1."""
    try:
        return built_binary(f"kind-node/{name}")
    except FileNotFoundError as missing:
        raise NodeImageError(
            f"{missing}; the kind node image's programs are built only with "
            "`JM_SETUP_KIND=1 bash tests/toolchain/setup`"
        ) from missing


# -- image recipes ------------------------------------------------------------------------


def _program_files(program: Path, at: str) -> dict[str, Path | bytes]:
    """``program`` at ``at`` plus the shared libraries it links (none when static)."""
    files: dict[str, Path | bytes] = {at: program}
    try:
        libraries = _linked_libraries(program)
    except subprocess.CalledProcessError:  # ldd: "not a dynamic executable"
        libraries = []
    files.update({str(library): library.resolve() for library in libraries})
    return files


@dataclass(frozen=True)
class ScratchImage:
    """An image of files only (no base), run as root (the control plane reads root-only
    keys) with ``PATH`` set, for commands kubeadm's manifests name without a path."""

    files: Callable[[], dict[str, Path | bytes]]
    entrypoint: tuple[str, ...] = ()

    def config(self) -> list[str]:
        entry = ["--entrypoint", json.dumps(list(self.entrypoint))] if self.entrypoint else []
        return ["--env", f"PATH={COMMAND_PATH}", *entry, "--cmd", "", "--user", "0:0"]

    def inputs(self, _: Builder) -> list[bytes | str]:
        files = self.files()
        contents = [f if isinstance(f, bytes) else f.read_bytes() for f in files.values()]
        return [*files, *contents, *self.config()]

    def make(self, builder: Builder, recipe: Recipe) -> None:
        builder.commit_scratch(recipe.name, self.files(), self.config())


@dataclass(frozen=True)
class DebianImage:
    """A bookworm rootfs of ``packages`` (mmdebstrap, its customize ``hooks`` run on it)
    plus ``files`` (image path -> host file)."""

    packages: tuple[str, ...]
    files: Callable[[], dict[str, Path]]
    config: tuple[str, ...]
    hooks: tuple[str, ...] = ()
    inputs_files: Callable[[], dict[str, Path]] = dict  # what the hooks bring in

    def inputs(self, _: Builder) -> list[bytes | str]:
        files = {**self.files(), **self.inputs_files()}
        contents = [path.read_bytes() for path in files.values()]
        modes = [oct(path.stat().st_mode & 0o777) for path in files.values()]
        return [*self.packages, *self.hooks, *self.config, *files, *contents, *modes]

    def make(self, builder: Builder, recipe: Recipe) -> None:
        with tempfile.TemporaryDirectory(prefix="jm-kind-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs.tar"
            _debian_rootfs(self.packages, rootfs, self.hooks)
            container = builder.buildah.run("from", "scratch")
            try:
                builder.buildah.run("add", container, str(rootfs), "/")
                for at, source in self.files().items():
                    mode = oct(source.stat().st_mode & 0o777)[2:]
                    builder.buildah.run("copy", "--chmod", mode, container, str(source), at)
                builder.buildah.run("config", *self.config, container)
                builder.buildah.run("commit", "--quiet", "--rm", container, recipe.name)
            except BaseException:
                builder.buildah.run("rm", container)
                raise


def _node_rootfs_files() -> dict[str, Path]:
    return {
        f"/{path.relative_to(NODE_ROOTFS)}": path
        for path in sorted(NODE_ROOTFS.rglob("*"))
        if path.is_file()
    }


def _helper_files() -> dict[str, Path | bytes]:
    """local-path-provisioner's helper: a shell, mkdir and rm (what its scripts run)."""
    files: dict[str, Path | bytes] = {}
    for at, program in (("/bin/sh", "bash"), ("/bin/mkdir", "mkdir"), ("/bin/rm", "rm")):
        files.update(_program_files(binary(program), at))
    return files


@dataclass(frozen=True)
class NodePart:
    """One image of the node: how it is made, and the names it has in the node."""

    recipe: Recipe
    tags: tuple[str, ...]


def _part(short_name: str, version: str, image: ScratchImage | DebianImage, *tags: str) -> NodePart:
    return NodePart(Recipe(f"kind-{short_name}", version, image.inputs, image.make), tags)


def _kube_image(command: str, version: str) -> NodePart:
    image = ScratchImage(lambda: _program_files(built_binary(command), f"/usr/local/bin/{command}"))
    return _part(command, version, image, f"registry.k8s.io/{command}:{version}")


def _containerd_files() -> dict[str, Path]:
    return {f"/usr/local/bin/{name}": kind_program(name) for name in CONTAINERD_PROGRAMS}


def base_part() -> NodePart:
    # The rootfs files are synced in by the first hook (the units they add are enabled
    # next); containerd's programs are added after.
    image = DebianImage(
        BASE_PACKAGES, _containerd_files, BASE_CONFIG, BASE_HOOKS, _node_rootfs_files
    )
    return _part("base", "bookworm", image)


def control_plane_parts() -> list[NodePart]:
    """The server tarball's four images: kind loads each from its own archive."""
    version = kube_version()
    proxy = DebianImage(
        KUBE_PROXY_PACKAGES,
        lambda: {"/usr/local/bin/kube-proxy": built_binary("kube-proxy")},
        ("--env", f"PATH={COMMAND_PATH}", "--cmd", ""),
    )
    return [
        _kube_image("kube-apiserver", version),
        _kube_image("kube-controller-manager", version),
        _kube_image("kube-scheduler", version),
        _part("kube-proxy", version, proxy, f"registry.k8s.io/kube-proxy:{version}"),
    ]


def extra_parts(kubeadm_images: Iterable[str]) -> list[NodePart]:
    """The images besides the control plane's: kubeadm's etcd and CoreDNS (at the versions
    ``kubeadm_images`` names, which setup's builds must match), our pause, and kind's."""
    wanted = {image.rsplit(":", 1)[0].rsplit("/", 1)[-1]: image for image in kubeadm_images}
    etcd_version = _required_version(
        KIND_TOOLCHAIN / "etcd" / "go.mod", "go.etcd.io/etcd/server/v3"
    )
    coredns_version = _required_version(
        KIND_TOOLCHAIN / "coredns" / "go.mod", "github.com/coredns/coredns"
    )
    built = {
        "etcd": f"registry.k8s.io/etcd:{etcd_version.removeprefix('v')}-0",
        "coredns": f"registry.k8s.io/coredns/coredns:{coredns_version}",
    }
    for name, tag in built.items():
        if wanted.get(name) != tag:
            raise NodeImageError(
                f"kubeadm {kube_version()} wants {wanted.get(name)}, tests/toolchain/kind/{name}"
                f" builds {tag}: pin its go.mod to kubeadm's version"
            )
    provisioner = _required_version(
        KIND_TOOLCHAIN / "local-path-provisioner" / "go.mod",
        "github.com/rancher/local-path-provisioner",
    )
    return [
        _part(
            "etcd",
            etcd_version,
            ScratchImage(lambda: _program_files(kind_program("etcd"), "/usr/local/bin/etcd")),
            built["etcd"],
        ),
        _part(
            "coredns",
            coredns_version,
            ScratchImage(
                lambda: _program_files(kind_program("coredns"), "/coredns"), ("/coredns",)
            ),
            built["coredns"],
        ),
        _part(
            "pause",
            "1",
            ScratchImage(lambda: _program_files(built_binary("jm-pause"), "/pause"), ("/pause",)),
            PAUSE_TAG,
        ),
        _part(
            "local-path-provisioner",
            provisioner,
            ScratchImage(
                lambda: _program_files(
                    kind_program("local-path-provisioner"),
                    "/usr/local/bin/local-path-provisioner",
                ),
                ("/usr/local/bin/local-path-provisioner",),
            ),
            LOCAL_PATH_PROVISIONER_TAG,
        ),
        _part("local-path-helper", "bookworm", ScratchImage(_helper_files), LOCAL_PATH_HELPER_TAG),
        _part(
            "kindnetd-placeholder",
            "1",
            ScratchImage(lambda: {"/README": KINDNETD_PLACEHOLDER}, ("/bin/kindnetd",)),
            KINDNETD_TAG,
        ),
    ]


def kubeadm_images() -> list[str]:
    """``kubeadm config images list`` of setup's kubeadm at its own version, minus pause
    (kind replaces it with containerd's sandbox_image)."""
    output = subprocess.run(
        [
            str(built_binary("kubeadm")),
            "config",
            "images",
            "list",
            "--kubernetes-version",
            kube_version(),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [line for line in output.split() if "/pause:" not in line]


# -- archives -----------------------------------------------------------------------------


def merge_archives(destination: Path, images: Iterable[tuple[Path, tuple[str, ...]]]) -> None:
    """One docker-archive of several (each archive with the tags it gets there), its
    ``repositories`` entry first: kind reads the tags of an archive from whichever of
    ``repositories`` and ``manifest.json`` comes first, and ``manifest.json`` lists only
    one image's."""
    manifest: list[dict[str, object]] = []
    repositories: dict[str, dict[str, str]] = {}
    members: dict[str, tuple[Path, tarfile.TarInfo]] = {}
    for archive, tags in images:
        with tarfile.open(archive) as tar:
            entry = archive_manifest(tar)
            for member in tar.getmembers():
                if member.name not in ("manifest.json", "repositories") and member.isfile():
                    members.setdefault(member.name, (archive, member))
        manifest.append({**entry, "RepoTags": list(tags)})
        top_layer = str(entry["Layers"][-1]).split("/")[0].removesuffix(".tar")
        for tag in tags:
            repository, _, version = tag.rpartition(":")
            repositories.setdefault(repository, {})[version] = top_layer
    partial = destination.with_name(destination.name + ".partial")
    with tarfile.open(partial, "w") as out:
        _add_bytes(out, "repositories", json.dumps(repositories).encode())
        by_archive: dict[Path, list[tarfile.TarInfo]] = {}
        for archive, member in members.values():
            by_archive.setdefault(archive, []).append(member)
        for archive, archive_members in by_archive.items():
            with tarfile.open(archive) as tar:
                for member in archive_members:
                    data = tar.extractfile(member)
                    assert data is not None
                    out.addfile(member, data)
        _add_bytes(out, "manifest.json", json.dumps(manifest).encode())
    partial.rename(destination)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_server_tarball(destination: Path, archives: dict[str, Path], version: str) -> None:
    """``kubernetes-server-linux-amd64.tar.gz`` as kind's ``--type file`` reads it:
    ``kubernetes/version`` and ``kubernetes/server/bin/`` with kubeadm, kubelet, kubectl
    and the four image archives (``archives``: file name -> archive)."""
    partial = destination.with_name(destination.name + ".partial")
    with (
        gzip.open(partial, "wb", compresslevel=1) as compressed,
        tarfile.open(fileobj=compressed, mode="w") as tar,
    ):
        _add_bytes(tar, "kubernetes/version", f"{version}\n".encode())
        for command in ("kubeadm", "kubelet", "kubectl"):
            tar.add(built_binary(command), f"kubernetes/server/bin/{command}")
        for name, archive in archives.items():
            tar.add(archive, f"kubernetes/server/bin/{name}")
    partial.rename(destination)


# -- the node image -----------------------------------------------------------------------


def node_image(engine: DockerEngine, progress: Progress = print) -> str:
    """The node image in ``engine``: loaded from the cache when its inputs are unchanged,
    else built by ``kind build node-image`` (and saved to the cache). Returns its name."""
    builder = Builder(workdir=cache_dir() / "kind-node", progress=progress)
    with build_lock(builder):
        base = base_part()
        control_plane = control_plane_parts()
        extras = extra_parts(kubeadm_images())
        built = {
            part.recipe.short_name: builder.build(part.recipe)
            for part in (base, *control_plane, *extras)
        }
        inputs: list[bytes | str] = [
            kube_version(),
            *(image.archive.with_suffix(".sha256").read_text() for image in built.values()),
            *(built_binary(command).read_bytes() for command in ("kubeadm", "kubelet", "kubectl")),
        ]
        key = _digest(inputs)[:12]
        name = f"{NODE_IMAGE_REPOSITORY}:{kube_version()}-{key}"
        saved = builder.workdir / f"kind-node-{key}.tar"
        if saved.exists():
            engine.docker("load", "--input", str(saved), timeout=900)
            return name
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="jm-kind-node-", dir=builder.workdir) as tmp:
            work = Path(tmp)
            archives: dict[str, Path] = {}
            for part in control_plane[:3]:
                single = work / f"{part.recipe.short_name}.tar"
                merge_archives(single, [(built[part.recipe.short_name].archive, part.tags)])
                archives[f"{part.recipe.short_name.removeprefix('kind-')}.tar"] = single
            proxy = control_plane[3]
            merge_archives(
                work / "kube-proxy.tar",
                [(built[part.recipe.short_name].archive, part.tags) for part in (proxy, *extras)],
            )
            archives["kube-proxy.tar"] = work / "kube-proxy.tar"
            tarball = work / f"kubernetes-server-linux-{ARCH}.tar.gz"
            write_server_tarball(tarball, archives, kube_version())
            base_name = base.recipe.name  # the name its archive carries
            engine.docker("load", "--input", str(built[base.recipe.short_name].archive))
            result = subprocess.run(
                [
                    str(binary("kind")),
                    "build",
                    "node-image",
                    "--base-image",
                    base_name,
                    "--type",
                    "file",
                    "--image",
                    name,
                    "--arch",
                    ARCH,
                    str(tarball),
                ],
                env={**engine.env(), "TMPDIR": str(work)},  # kind unpacks the tarball there
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if result.returncode:
                raise NodeImageError(
                    f"kind build node-image exited {result.returncode}:\n"
                    f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
                )
            progress(f"kind build node-image {name}: {time.monotonic() - started:.0f} s")
            for stale in builder.workdir.glob("kind-node-*.tar"):
                stale.unlink()
            engine.docker("save", "--output", str(saved.with_suffix(".partial")), name, timeout=900)
            saved.with_suffix(".partial").rename(saved)
        return name
