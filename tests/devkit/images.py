"""Container images of everything we deploy, built here without a daemon or a registry.

Nothing can be pulled on this machine, so every image is made from local inputs:

* ``python-base``: a Debian bookworm rootfs made by mmdebstrap from Debian's packages (the
  host's apt sources), committed by buildah. Our Dockerfiles keep their upstream ``FROM``
  for users and get this base through their ``BASE_IMAGE`` build argument.
* the operator and the shop: ``operator/Dockerfile`` and ``app/Dockerfile``, the files users
  build, run by ``buildah bud`` (chroot isolation; the network only for pip through the
  host's configuration, whose CA bundle is mounted for the build and never copied in).
* the exporters at the versions the CR's default images pin: postgres, redis and node
  exporters are static Go binaries from tests/toolchain/exporters (built by setup) on an
  empty base; nginx-prometheus-exporter is Debian's binary with the libraries it links;
  the Celery exporter is PyPI's ``prometheus-exporter-celery`` in its own virtualenv.
* the monitoring stack that reads our objects in pods: prometheus-operator and its config
  reloader (v0.85) and Prometheus 3, as setup builds them from their Go modules, and
  Debian's Alertmanager; each binary with the libraries it links, run as nobody.

Each image is exported as a docker-archive tarball (what ``ctr image import`` loads) named
``localhost/jm/<name>:<version>``, and rebuilt only when the content hash of its inputs
(recipe, Dockerfile, build context files, base image) changes; the hash is stamped next to
the tarball in the tool cache. Buildah's storage lives in the tool cache too.

    build_images(progress) -> dict[str, BuiltImage]   # every deployable image
    archive_config(path) -> dict                       # the image config inside a tarball
    unpack_rootfs(path, dest)                          # its layers applied into a directory
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devkit.toolchain import SETUP_HINT, built_binary, cache_dir

REPO = Path(__file__).resolve().parents[2]
TOOLCHAIN = REPO / "tests" / "toolchain"
IMAGE_RECIPES = TOOLCHAIN / "images"
REGISTRY = "localhost/jm"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DEBIAN_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# What the Python images need from Debian: the interpreter, venv + pip (the Dockerfiles run
# `python -m venv` and `pip wheel`) and CA certificates for pip at build time.
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
# Documentation is dead weight in an image; copyright files stay (licences).
BASE_DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The exporters run as "nobody", as the operator's pod securityContext says.
NOBODY = 65534
# Debian's nginx exporter; the Go proxy refuses github.com/nginx/nginx-prometheus-exporter.
DEBIAN_NGINX_EXPORTER = Path("/usr/bin/prometheus-nginx-exporter")
DEBIAN_ALERTMANAGER = Path("/usr/bin/prometheus-alertmanager")

Progress = Callable[[str], None]


class ImageBuildError(RuntimeError):
    """A build step failed; the message carries the command and its output."""


@dataclass(frozen=True)
class BuiltImage:
    """One image, ready for ``ctr -n k8s.io image import <archive>``."""

    name: str  # localhost/jm/<name>:<version>
    archive: Path  # docker-archive tarball
    built: bool  # False when the stamp said the inputs were unchanged


# --------------------------------------------------------------------------- buildah


@dataclass(frozen=True)
class Buildah:
    """buildah with its storage in the tool cache, chroot isolation, no daemon."""

    root: Path

    def command(self, *args: str) -> list[str]:
        """``buildah <args>`` on this storage (run with ``BUILDAH_ISOLATION=chroot``)."""
        return [
            "buildah",
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "overlay",
            # No private bind mount of the storage dir: nothing stays mounted after a build.
            "--storage-opt",
            "overlay.skip_mount_home=true",
            *args,
        ]

    def run(self, *args: str) -> str:
        command = self.command(*args)
        env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode:
            output = (result.stdout + result.stderr)[-4000:]
            raise ImageBuildError(f"{' '.join(command)} exited {result.returncode}:\n{output}")
        return result.stdout.strip()

    def image_id(self, name: str) -> str | None:
        try:
            return self.run("inspect", "--type", "image", "--format", "{{.FromImageID}}", name)
        except ImageBuildError:
            return None

    def export(self, name: str, archive: Path) -> None:
        """Write ``name`` as a docker-archive tarball (atomically: a reader never sees half)."""
        partial = archive.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        self.run("push", "--quiet", name, f"docker-archive:{partial}:{name}")
        partial.rename(archive)


# --------------------------------------------------------------------------- inputs


def _digest(parts: Iterable[bytes | str]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "big") + data)
    return hasher.hexdigest()


def _dockerignore_patterns(context: Path) -> list[str]:
    ignore = context / ".dockerignore"
    if not ignore.exists():
        return []
    return [
        line.strip()
        for line in ignore.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a parent matches."""
    parents = [str(Path(*Path(path).parts[:n])) for n in range(1, len(Path(path).parts) + 1)]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").strip("/")
        variants = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(p, v) for p in parents for v in variants):
            ignored = not negate
    return ignored


def context_files(context: Path) -> list[Path]:
    """The files of a build context that matter: tracked or untracked-but-not-gitignored
    files (git's view keeps .venv and caches out), minus what .dockerignore excludes."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "."],
        cwd=context,
        capture_output=True,
        check=True,
    ).stdout.decode()
    patterns = _dockerignore_patterns(context)
    return sorted(
        context / name
        for name in set(listed.split("\0"))
        if name and (context / name).is_file() and not _ignored(name, patterns)
    )


def files_digest(files: Iterable[Path], root: Path) -> list[bytes | str]:
    parts: list[bytes | str] = []
    for file in files:
        parts += [str(file.relative_to(root)), file.read_bytes(), oct(file.stat().st_mode & 0o111)]
    return parts


# --------------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class Recipe:
    """How one image is made. ``inputs`` returns what its content hash covers (cheap, no
    build); ``make`` builds the image into buildah's storage under ``name``."""

    short_name: str
    version: str
    inputs: Callable[[Builder], list[bytes | str]]
    make: Callable[[Builder, Recipe], None]
    base: str | None = None  # short name of a recipe this one builds FROM
    exported: bool = True

    @property
    def name(self) -> str:
        return f"{REGISTRY}/{self.short_name}:{self.version}"


@dataclass
class Builder:
    """Builds recipes in dependency order, skipping those whose input hash is stamped."""

    workdir: Path = field(default_factory=lambda: cache_dir() / "images")
    progress: Progress = print

    def __post_init__(self) -> None:
        self.buildah = Buildah(self.workdir / "containers")
        self.recipes = {recipe.short_name: recipe for recipe in recipes()}

    def base_id(self, recipe: Recipe) -> str:
        """The image ID of ``recipe``'s base (built first if needed): part of its inputs."""
        assert recipe.base is not None
        base = self.build(self.recipes[recipe.base])
        image_id = self.buildah.image_id(base.name)
        assert image_id, base.name
        return image_id

    def build(self, recipe: Recipe) -> BuiltImage:
        self.workdir.mkdir(parents=True, exist_ok=True)
        archive = self.workdir / f"{recipe.short_name}-{recipe.version}.tar"
        stamp = archive.with_suffix(".sha256")
        want = _digest([recipe.name, *recipe.inputs(self)])
        present = archive.exists() if recipe.exported else bool(self.buildah.image_id(recipe.name))
        if present and stamp.exists() and stamp.read_text() == want:
            return BuiltImage(recipe.name, archive, built=False)
        self.progress(f"building {recipe.name}")
        started = time.monotonic()
        recipe.make(self, recipe)
        if recipe.exported:
            self.buildah.export(recipe.name, archive)
            # The tarball is the product: keep only bases in buildah's storage (disk).
            self.buildah.run("rmi", recipe.name)
        self.buildah.run("rmi", "--prune")  # what a rebuild replaced (e.g. an older base)
        stamp.write_text(want)
        seconds = time.monotonic() - started
        size = f", {archive.stat().st_size / 1e6:.0f} MB" if recipe.exported else ""
        self.progress(f"built {recipe.name} in {seconds:.0f}s{size}")
        return BuiltImage(recipe.name, archive, built=True)

    def build_all(self) -> dict[str, BuiltImage]:
        """Every exported image by short name (the base is built on the way, not exported).
        Tarballs of versions no recipe makes any more are deleted (disk)."""
        images = {
            name: self.build(recipe) for name, recipe in self.recipes.items() if recipe.exported
        }
        current = {image.archive for image in images.values()}
        for stale in set(self.workdir.glob("*.tar")) - current:
            stale.unlink()
            stale.with_suffix(".sha256").unlink(missing_ok=True)
        return images

    def commit_scratch(
        self,
        name: str,
        files: dict[str, Path | bytes],
        config: list[str],
    ) -> None:
        """An image from nothing: ``files`` (image path -> host file or content) plus
        ``buildah config`` options, committed as ``name``."""
        container = self.buildah.run("from", "scratch")
        try:
            with tempfile.TemporaryDirectory(prefix="jm-image-") as staging:
                for image_path, source in files.items():
                    if isinstance(source, bytes):
                        staged = Path(staging) / image_path.strip("/").replace("/", "_")
                        staged.write_bytes(source)
                        source = staged
                    self.buildah.run("copy", container, str(source), image_path)
            self.buildah.run("config", *config, container)
            self.buildah.run("commit", "--quiet", "--rm", container, name)
        except BaseException:
            self.buildah.run("rm", container)
            raise


def _passwd_files() -> dict[str, Path | bytes]:
    """/etc/passwd and /etc/group naming "nobody", for tools that look their user up."""
    return {
        "/etc/passwd": f"nobody:x:{NOBODY}:{NOBODY}:nobody:/nonexistent:/sbin/nologin\n".encode(),
        "/etc/group": f"nogroup:x:{NOBODY}:\n".encode(),
    }


def _exporter_config(entrypoint: str, port: int, source: str) -> list[str]:
    return [
        "--user",
        f"{NOBODY}:{NOBODY}",
        "--entrypoint",
        json.dumps([entrypoint]),
        "--cmd",
        "",
        "--port",
        f"{port}/tcp",
        "--label",
        f"org.opencontainers.image.source={source}",
    ]


# The base ----------------------------------------------------------------------------


def _base_inputs(_: Builder) -> list[bytes | str]:
    return [DEBIAN_SOURCES.read_bytes(), *BASE_PACKAGES, *BASE_DPKG_OPTIONS, BASE_PATH]


def _debian_rootfs(
    packages: Iterable[str], rootfs: Path, hooks: Iterable[str] = ()
) -> dict[str, str]:
    """A bookworm rootfs tarball of ``packages`` (minbase, no documentation) from the host's
    apt sources; ``hooks`` are mmdebstrap customize hooks (``$1`` is the root). Returns the
    installed package versions (from the rootfs' dpkg status)."""
    command = [
        "mmdebstrap",
        "--quiet",
        "--variant=minbase",
        f"--include={','.join(packages)}",
        *(f"--dpkgopt={option}" for option in BASE_DPKG_OPTIONS),
        *(f"--customize-hook={hook}" for hook in hooks),
        "bookworm",
        str(rootfs),
        "-",
    ]
    with DEBIAN_SOURCES.open("rb") as sources:
        result = subprocess.run(command, stdin=sources, capture_output=True, text=True)
    if result.returncode:
        raise ImageBuildError(
            f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-4000:]}"
        )
    with tarfile.open(rootfs) as tar:
        status = tar.extractfile("./var/lib/dpkg/status")
        assert status is not None
        text = status.read().decode()
    return dict(re.findall(r"^Package: (\S+)\n(?:.+\n)*?Version: (\S+)$", text, re.MULTILINE))


def _make_base(builder: Builder, recipe: Recipe) -> None:
    with tempfile.TemporaryDirectory(prefix="jm-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        _debian_rootfs(BASE_PACKAGES, rootfs)
        container = builder.buildah.run("from", "scratch")
        builder.buildah.run("add", container, str(rootfs), "/")
        builder.buildah.run(
            "config", "--env", f"PATH={BASE_PATH}", "--cmd", '["python3"]', container
        )
        builder.buildah.run("commit", "--quiet", "--rm", container, recipe.name)


# Dockerfile images -------------------------------------------------------------------


@dataclass(frozen=True)
class DockerfileBuild:
    """``buildah bud`` of one of our Dockerfiles on the local base."""

    dockerfile: Path
    context: Path

    def inputs(self, builder: Builder, recipe: Recipe) -> list[bytes | str]:
        return [
            self.dockerfile.read_bytes(),
            *files_digest(context_files(self.context), self.context),
            builder.base_id(recipe),
        ]

    def make(self, builder: Builder, recipe: Recipe) -> None:
        assert recipe.base is not None
        base = builder.recipes[recipe.base].name
        builder.buildah.run(
            "bud",
            "--pull=never",
            "--network=host",
            "--layers=false",
            "--quiet",
            # The host's CA bundle (the registry proxy's CA is only there), for pip during
            # the build; a bind mount, so it never lands in a layer.
            "-v",
            f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
            f"--build-arg=BASE_IMAGE={base}",
            "-f",
            str(self.dockerfile),
            "-t",
            recipe.name,
            str(self.context),
        )


def dockerfile_recipe(short_name: str, version: str, build: DockerfileBuild) -> Recipe:
    return Recipe(
        short_name=short_name,
        version=version,
        inputs=lambda builder: build.inputs(builder, builder.recipes[short_name]),
        make=lambda builder, recipe: build.make(builder, recipe),
        base="python-base",
    )


# Exporters ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GoExporter:
    """A static exporter binary built by setup from tests/toolchain/exporters/go.mod."""

    binary: str  # file name in <cache>/bin and /bin/<binary> in the image
    module: str
    port: int

    @property
    def path(self) -> Path:
        return cache_dir() / "bin" / self.binary

    def version(self) -> str:
        go_mod = (TOOLCHAIN / "exporters" / "go.mod").read_text()
        found = re.search(rf"^\s*{re.escape(self.module)} (v\S+)$", go_mod, re.MULTILINE)
        assert found, f"{self.module} is not required in tests/toolchain/exporters/go.mod"
        return found[1]

    def inputs(self, _: Builder) -> list[bytes | str]:
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} is missing: {SETUP_HINT}")
        return [self.path.read_bytes(), *_passwd_files().values(), *self.config()]

    def config(self) -> list[str]:
        return _exporter_config(f"/bin/{self.binary}", self.port, self.module)

    def make(self, builder: Builder, recipe: Recipe) -> None:
        files: dict[str, Path | bytes] = {f"/bin/{self.binary}": self.path, **_passwd_files()}
        builder.commit_scratch(recipe.name, files, self.config())


GO_EXPORTERS = {
    "postgres-exporter": GoExporter(
        "postgres_exporter", "github.com/prometheus-community/postgres_exporter", 9187
    ),
    "redis-exporter": GoExporter("redis_exporter", "github.com/oliver006/redis_exporter", 9121),
    "node-exporter": GoExporter("node_exporter", "github.com/prometheus/node_exporter", 9100),
}


def _linked_libraries(binary: Path) -> list[Path]:
    """The shared objects a dynamically linked binary loads (ldd), loader included."""
    output = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True)
    return [Path(p) for p in re.findall(r"(/\S+) \(0x", output.stdout)]


def debian_package_version(package: str) -> str:
    """Installed version of a Debian package, upstream part only (``0.11.0-1+b4`` -> 0.11.0)."""
    output = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
    )
    if output.returncode or not output.stdout:
        raise FileNotFoundError(f"Debian package {package} is not installed: {SETUP_HINT}")
    return _upstream_version(output.stdout)


def _upstream_version(debian_version: str) -> str:
    """``5:7.0.15-1~deb12u10`` -> ``7.0.15``: no epoch, no Debian revision (a valid tag)."""
    return debian_version.split(":")[-1].split("-")[0]


def debian_candidate_version(package: str) -> str:
    """The version of a package apt would install now (the host's package lists), upstream
    part: what a rootfs made by mmdebstrap from the same sources gets."""
    output = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", package], capture_output=True, text=True
    )
    found = re.search(r"^Version: (\S+)$", output.stdout, re.MULTILINE)
    if output.returncode or not found:
        raise FileNotFoundError(f"apt knows no package {package}: apt-get update, then retry")
    return _upstream_version(found[1])


@dataclass(frozen=True)
class HostProgram:
    """An image of one program already built on this host (Debian's package, or setup's
    build from a Go module pinned in tests/toolchain): the binary, the shared libraries it
    links (ldd, loader included), passwd files naming nobody, and ``data`` directories it
    reads. Runs as nobody, like the upstream images these stand in for."""

    program: Callable[[], Path]  # the host binary (looked up when needed: may be unbuilt)
    entrypoint: str  # where the binary goes in the image
    port: int
    source: str  # org.opencontainers.image.source label: where the program comes from
    data: tuple[Path, ...] = ()  # host directories copied to the same path

    def files(self) -> dict[str, Path | bytes]:
        binary = self.program()
        files: dict[str, Path | bytes] = {self.entrypoint: binary}
        files.update({str(lib): lib.resolve() for lib in _linked_libraries(binary)})
        for directory in self.data:
            files.update({str(f): f for f in sorted(directory.rglob("*")) if f.is_file()})
        return {**files, **_passwd_files()}

    def config(self) -> list[str]:
        return _exporter_config(self.entrypoint, self.port, self.source)

    def inputs(self, _: Builder) -> list[bytes | str]:
        files = self.files()
        contents = [f if isinstance(f, bytes) else f.read_bytes() for f in files.values()]
        return [*contents, *files, *self.config()]

    def make(self, builder: Builder, recipe: Recipe) -> None:
        builder.commit_scratch(recipe.name, self.files(), self.config())


NGINX_EXPORTER = HostProgram(
    lambda: DEBIAN_NGINX_EXPORTER,
    "/bin/nginx-prometheus-exporter",
    9113,
    "Debian prometheus-nginx-exporter",
)

# The monitoring stack the e2e and the demo run in pods (devkit.prometheus_stack): what
# kube-prometheus-stack would pull from quay.io, made from what setup builds (Prometheus 3,
# prometheus-operator and its config reloader from their Go modules) and from Debian's
# Alertmanager (v0.35 does not build from its module; see tests/toolchain/setup).
PROMETHEUS_OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
MONITORING_PROGRAMS = {
    "prometheus-operator": HostProgram(
        lambda: built_binary("prometheus-operator"),
        "/bin/operator",
        8080,
        PROMETHEUS_OPERATOR_MODULE,
    ),
    "prometheus-config-reloader": HostProgram(
        lambda: built_binary("prometheus-config-reloader"),
        "/bin/prometheus-config-reloader",
        8080,
        PROMETHEUS_OPERATOR_MODULE,
    ),
    "prometheus": HostProgram(
        lambda: built_binary("prometheus"),
        "/bin/prometheus",
        9090,
        "github.com/prometheus/prometheus",
    ),
    "alertmanager": HostProgram(
        lambda: DEBIAN_ALERTMANAGER,
        "/bin/alertmanager",
        9093,
        "Debian prometheus-alertmanager",
        # Its templates and UI stub: Debian's build reads them from there, not embedded.
        data=(Path("/usr/share/prometheus/alertmanager"),),
    ),
}


def built_program_version(name: str) -> str:
    """``v<version>`` a program setup built reports (``prometheus, version 3.16.0 (...)``):
    the version stamped in from its module (tests/toolchain/setup)."""
    output = subprocess.run(
        [str(built_binary(name)), "--version"], capture_output=True, text=True, timeout=60
    )
    found = re.search(r"version (\d\S*)", output.stdout + output.stderr)
    if not found:
        raise ImageBuildError(f"{name} --version says no version: {output.stdout!r}")
    return f"v{found[1]}"


def monitoring_recipes() -> list[Recipe]:
    versions = {
        "prometheus-operator": built_program_version("prometheus-operator"),
        "prometheus-config-reloader": built_program_version("prometheus-config-reloader"),
        "prometheus": built_program_version("prometheus"),
        "alertmanager": f"v{debian_package_version('prometheus-alertmanager')}",
    }
    return [
        Recipe(name, versions[name], program.inputs, program.make)
        for name, program in MONITORING_PROGRAMS.items()
    ]


# The dev shop's services -----------------------------------------------------------------


@dataclass(frozen=True)
class DebianService:
    """A service manifests/dev runs beside the shop (PostgreSQL, Redis, nginx), made from
    Debian's package of it and started as the official image starts it (the same
    environment variables; an entrypoint script from tests/toolchain/images/<name>/ where
    the official image has one). Tagged with the package's upstream version."""

    short_name: str
    package: str  # the program's package: its version tags the image
    port: int
    user: str = "root"  # as upstream (nginx's master binds, then drops to www-data)
    command: str = ""  # the image's CMD (JSON); none with an entrypoint
    path: str = BASE_PATH
    env: tuple[str, ...] = ()
    extra_packages: tuple[str, ...] = ()
    hooks: tuple[str, ...] = ()  # mmdebstrap customize hooks

    @property
    def entrypoint(self) -> Path:
        return IMAGE_RECIPES / self.short_name / "entrypoint.sh"

    def config(self) -> list[str]:
        start = ["--cmd", self.command] if self.command else ["--entrypoint", '["/entrypoint"]']
        env = [option for value in (f"PATH={self.path}", *self.env) for option in ("--env", value)]
        return [*env, "--user", self.user, *start, "--port", f"{self.port}/tcp"]

    def recipe(self) -> Recipe:
        return Recipe(
            self.short_name, debian_candidate_version(self.package), self.inputs, self.make
        )

    def inputs(self, _: Builder) -> list[bytes | str]:
        script = [] if self.command else [self.entrypoint.read_bytes()]
        packages = (self.package, *self.extra_packages)
        return [DEBIAN_SOURCES.read_bytes(), *packages, *self.hooks, *self.config(), *script]

    def make(self, builder: Builder, recipe: Recipe) -> None:
        with tempfile.TemporaryDirectory(prefix="jm-rootfs-") as tmp:
            rootfs = Path(tmp) / "rootfs.tar"
            installed = _debian_rootfs((self.package, *self.extra_packages), rootfs, self.hooks)
            if _upstream_version(installed[self.package]) != recipe.version:
                raise ImageBuildError(
                    f"{self.package} {installed[self.package]} was installed, not"
                    f" {recipe.version}: the host's package lists are stale (apt-get update)"
                )
            container = builder.buildah.run("from", "scratch")
            try:
                builder.buildah.run("add", container, str(rootfs), "/")
                if not self.command:
                    builder.buildah.run(
                        "copy", "--chmod", "0755", container, str(self.entrypoint), "/entrypoint"
                    )
                builder.buildah.run("config", *self.config(), container)
                builder.buildah.run("commit", "--quiet", "--rm", container, recipe.name)
            except BaseException:
                builder.buildah.run("rm", container)
                raise


POSTGRES_MAJOR = "15"  # bookworm's
DEBIAN_SERVICES = (
    DebianService(
        "postgres",
        f"postgresql-{POSTGRES_MAJOR}",
        5432,
        user="postgres",
        path=f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin:{BASE_PATH}",
        # The socket goes to /tmp (the image has no /run/postgresql, which Debian's tmpfiles
        # make at boot); PGHOST sends local clients such as pg_isready there too.
        env=("PGDATA=/var/lib/postgresql/data", "PGHOST=/tmp"),
    ),
    DebianService("redis", "redis-server", 6379, user="redis", command='["redis-server"]'),
    DebianService(
        "nginx",
        "nginx",
        80,
        extra_packages=("gettext-base",),  # envsubst
        hooks=('rm -f "$1/etc/nginx/sites-enabled/default"',),  # conf.d/ only, as upstream
    ),
)


def celery_exporter_version() -> str:
    """prometheus-exporter-celery's pin, shared by setup's host virtualenv and the image."""
    requirements = (IMAGE_RECIPES / "celery-exporter" / "requirements.txt").read_text()
    found = re.search(r"^prometheus-exporter-celery==(\S+)$", requirements, re.MULTILINE)
    assert found, "prometheus-exporter-celery is not pinned in its requirements.txt"
    return found[1]


def distribution_version(directory: Path) -> str:
    """The version of the distribution in ``directory`` (its pyproject): its image's tag."""
    return str(tomllib.loads((directory / "pyproject.toml").read_text())["project"]["version"])


def recipes() -> list[Recipe]:
    """Every image, bases first."""
    return [
        Recipe("python-base", "bookworm", _base_inputs, _make_base, exported=False),
        dockerfile_recipe(
            "jewelry-monitoring-operator",
            distribution_version(REPO / "operator"),
            DockerfileBuild(REPO / "operator" / "Dockerfile", REPO),
        ),
        dockerfile_recipe(
            "jewelry-shop",
            distribution_version(REPO / "app"),
            DockerfileBuild(REPO / "app" / "Dockerfile", REPO / "app"),
        ),
        *(Recipe(name, go.version(), go.inputs, go.make) for name, go in GO_EXPORTERS.items()),
        Recipe(
            "nginx-prometheus-exporter",
            debian_package_version("prometheus-nginx-exporter"),
            NGINX_EXPORTER.inputs,
            NGINX_EXPORTER.make,
        ),
        dockerfile_recipe(
            "celery-exporter",
            celery_exporter_version(),
            DockerfileBuild(
                IMAGE_RECIPES / "celery-exporter" / "Dockerfile", IMAGE_RECIPES / "celery-exporter"
            ),
        ),
        *(service.recipe() for service in DEBIAN_SERVICES),
        *monitoring_recipes(),
    ]


def build_images(progress: Progress = print) -> dict[str, BuiltImage]:
    """Build (or find up to date) every image we deploy; short name -> BuiltImage.

    One builder at a time per cache (a lock file): concurrent callers, e.g. two test
    sessions, wait and then find the images up to date."""
    builder = Builder(progress=progress)
    with build_lock(builder):
        return builder.build_all()


@contextlib.contextmanager
def build_lock(builder: Builder) -> Iterator[None]:
    """Hold the cache's build lock (a lock file): one builder at a time per cache."""
    builder.workdir.mkdir(parents=True, exist_ok=True)
    with open(builder.workdir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# --------------------------------------------------------------------------- archives


def archive_manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    """The manifest entry (Config, RepoTags, Layers) of the one image in a docker-archive."""
    member = tar.extractfile("manifest.json")
    assert member is not None, f"{tar.name!r}: no manifest.json"
    manifests = json.load(member)
    if len(manifests) != 1:
        raise ValueError(f"{tar.name!r}: expected one image, found {len(manifests)}")
    manifest: dict[str, Any] = manifests[0]
    return manifest


def archive_tags(archive: Path) -> list[str]:
    """The RepoTags of the one image in a docker-archive tarball."""
    with tarfile.open(archive) as tar:
        return list(archive_manifest(tar).get("RepoTags") or [])


def archive_config(archive: Path) -> dict[str, Any]:
    """The image configuration (``config`` of the image JSON) of a docker-archive tarball."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile(archive_manifest(tar)["Config"])
        assert member is not None
        config: dict[str, Any] = json.load(member)["config"]
        return config


def unpack_rootfs(archive: Path, dest: Path) -> None:
    """Apply the image's layers in order into ``dest`` (OCI whiteouts honoured): the
    filesystem a container of the image starts with."""
    dest.chmod(0o755)  # a root directory, whatever mode the caller's temp dir had
    with tarfile.open(archive) as tar, tempfile.TemporaryDirectory(prefix="jm-layer-") as tmp:
        for layer in archive_manifest(tar)["Layers"]:
            tar.extract(layer, tmp, set_attrs=False)
            layer_path = Path(tmp) / layer
            with tarfile.open(layer_path) as layer_tar:
                names = layer_tar.getnames()
            for name in names:
                base = os.path.basename(name)
                if not base.startswith(".wh."):
                    continue
                target = dest / os.path.dirname(name) / base.removeprefix(".wh.")
                if base == ".wh..wh..opq":
                    for child in target.parent.iterdir() if target.parent.exists() else ():
                        _remove(child)
                else:
                    _remove(target)
            subprocess.run(
                ["tar", "-xf", str(layer_path), "-C", str(dest), "--exclude=.wh.*"],
                check=True,
            )
            layer_path.unlink()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def main(progress: Progress = print) -> int:
    """`jm-dev images`: build what changed, then list every image and its tarball."""
    started = time.monotonic()
    images = build_images(progress)
    for image in images.values():
        size = image.archive.stat().st_size / 1e6
        progress(f"{image.name}  {image.archive}  ({size:.0f} MB)")
    progress(f"{len(images)} images up to date in {time.monotonic() - started:.1f}s")
    return 0
