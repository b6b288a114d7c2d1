"""A throw-away kind cluster and the Docker engine it needs, for the end-to-end test.

kind runs Kubernetes nodes as Docker containers, so everything here needs a running Docker
engine; ``docker_problem()`` says why it cannot run (no client, no engine) so callers can
skip with that reason instead of failing.
"""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devkit.toolchain import binary

REPO = Path(__file__).resolve().parents[2]


def docker_problem() -> str | None:
    """Why Docker cannot be used here, or None when ``docker info`` answers."""
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except FileNotFoundError:
        return "no docker client on PATH"
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer in 30s"
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        return f"no Docker engine: `docker info` failed ({detail[-1] if detail else 'no output'})"
    return None


def run(command: list[str], timeout: float = 900, cwd: Path = REPO) -> str:
    """Run a command, raising with its output on failure."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result.stdout


def docker_build(tag: str, dockerfile: Path, context: Path) -> None:
    run(["docker", "build", "-f", str(dockerfile), "-t", tag, str(context)], timeout=1800)


@dataclass
class KindCluster:
    """``kind create cluster`` with its own kubeconfig file; ``delete()`` removes it all."""

    workdir: Path
    name: str = field(default_factory=lambda: f"jm-e2e-{uuid.uuid4().hex[:8]}")

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kind.kubeconfig"

    def create(self, wait: str = "180s") -> KindCluster:
        run(
            [
                str(binary("kind")),
                "create",
                "cluster",
                "--name",
                self.name,
                "--kubeconfig",
                str(self.kubeconfig),
                "--wait",
                wait,
            ]
        )
        return self

    def load_image(self, tag: str) -> None:
        run([str(binary("kind")), "load", "docker-image", tag, "--name", self.name])

    def load_image_archive(self, archive: Path) -> None:
        """A docker-archive tarball (devkit.images) onto every node of the cluster."""
        run([str(binary("kind")), "load", "image-archive", str(archive), "--name", self.name])

    def export_logs(self, destination: Path) -> None:
        subprocess.run(
            [str(binary("kind")), "export", "logs", str(destination), "--name", self.name],
            capture_output=True,
            timeout=300,
        )

    def delete(self) -> None:
        subprocess.run(
            [str(binary("kind")), "delete", "cluster", "--name", self.name],
            capture_output=True,
            timeout=300,
        )


@contextlib.contextmanager
def new_kind_cluster(workdir: Path) -> Iterator[KindCluster]:
    """A kind cluster for a block; its logs go to ``workdir/logs``, then it is deleted."""
    cluster = KindCluster(workdir)
    try:
        yield cluster.create()
    finally:
        cluster.export_logs(workdir / "logs")
        cluster.delete()
