"""A container registry on loopback, as a user's own registry (ECR, GHCR, Harbor) stands in
for it here: Debian's ``docker-registry`` (the CNCF Distribution registry, 2.8), started and
stopped like the devkit's other daemons.

It listens on 127.0.0.1 only, over plain HTTP (loopback traffic never leaves the machine),
keeps its blobs in a temporary directory removed at stop, and has no proxy or notification
set up: it never dials out. Images go in with skopeo from the docker-archive tarballs the
devkit builds (devkit.images), as ``docker push`` / ``podman push`` / ``buildah push`` would
send them; the node's containerd pulls from it by its name once ``Node.allow_registry``
names it (devkit.node.containerd), while every other registry stays a dead end.

    registry_server() -> Registry               # context manager
    Registry.push(archive, repository, tag) -> reference
    Registry.tags(repository) -> list[str]
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from devkit.prometheus import Process
from devkit.services import LOOPBACK, ServiceError
from devkit.toolchain import SETUP_HINT

REGISTRY_BINARY = Path("/usr/bin/docker-registry")


@dataclass(frozen=True)
class Registry:
    """A running registry; ``host`` is how image references name it (``127.0.0.1:<port>``)."""

    host: str
    process: Process

    def reference(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    def push(self, archive: Path, repository: str, tag: str) -> str:
        """Copy a docker-archive tarball's image into ``repository:tag``; its reference."""
        reference = self.reference(repository, tag)
        result = subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",  # plain HTTP on loopback
                f"docker-archive:{archive}",
                f"docker://{reference}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if result.returncode:
            raise ServiceError(f"skopeo copy to {reference} failed:\n{result.stderr[-4000:]}")
        return reference

    def tags(self, repository: str) -> list[str]:
        """The tags the registry holds for ``repository`` (its v2 API)."""
        url = f"http://{self.host}/v2/{repository}/tags/list"
        with urllib.request.urlopen(url, timeout=10) as reply:
            listing = json.loads(reply.read())
        return sorted(listing.get("tags") or [])


def registry_config(root: Path) -> dict[str, object]:
    """Filesystem storage under ``root``; the address comes from REGISTRY_HTTP_ADDR."""
    return {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"{LOOPBACK}:0"},
    }


@contextlib.contextmanager
def registry_server(startup_timeout: float = 30) -> Iterator[Registry]:
    """Run a throw-away registry on a free loopback port; stopped and removed on exit."""
    if not REGISTRY_BINARY.is_file():
        raise ServiceError(f"{REGISTRY_BINARY} is not installed: {SETUP_HINT}")
    root = Path(tempfile.mkdtemp(prefix="devkit-registry-"))
    config = root / "config.yml"
    config.write_text(yaml.safe_dump(registry_config(root)))
    process = Process(
        name="registry",
        # Its listen address only comes from the configuration or this variable.
        argv_for_port=lambda port: [
            "env",
            f"REGISTRY_HTTP_ADDR={LOOPBACK}:{port}",
            str(REGISTRY_BINARY),
            "serve",
            str(config),
        ],
        ready_path="/v2/",
        workdir=root,
        env={},
        startup_timeout=startup_timeout,
    )
    try:
        process.start()
        yield Registry(f"{LOOPBACK}:{process.port}", process)
    finally:
        process.stop()
        shutil.rmtree(root, ignore_errors=True)
