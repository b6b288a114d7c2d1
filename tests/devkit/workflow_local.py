"""The e2e-kind workflow's steps on this machine, as far as they go without GitHub.

GitHub runs ``.github/workflows/e2e-kind.yaml`` on an ubuntu-24.04 runner: checkout,
setup-go, the tool cache, then one step whose ``run:`` script does everything in a
privileged debian:bookworm container (setup, then tests/e2e on the kind backend). Here,
``jm-dev workflow e2e-kind`` (under the host lock: it starts a node and a kind cluster):

- checkout: a clone of the branch's HEAD in a temporary directory (the step mounts it at
  its own path and builds a virtualenv in it; the working tree is left alone);
- setup-go: the host's Go (``go env GOROOT``, which the step mounts); the tool cache: the
  host's own cache directories, which the step mounts as they are;
- the step's ``run:`` script, read from the workflow and run by bash as written, with our
  Docker engine (devkit.dockerd) as the runner's;
- ``debian:bookworm``, which nothing can pull here: a minbase rootfs of Debian's packages
  (mmdebstrap, as the official image is made), loaded into the engine under that name.

Two things differ from GitHub, and only inside the container, both host files mounted
read-only into the step's container (never copied into an image), as for every build here:

- this machine reaches PyPI through a TLS-intercepting proxy whose CA is in the host's
  bundle only: the bundle goes where Debian's ``update-ca-certificates`` takes local
  certificates from, so the container's own bundle, made when the step installs
  ca-certificates, holds it. (Mounted over ``/etc/ssl/certs/ca-certificates.crt`` itself,
  that install failed: ``mv: cannot move '/etc/ssl/certs/ca-certificates.crt.new' to
  'ca-certificates.crt': Device or resource busy``);
- our engine gives every container a resolver where nothing answers (devkit.dockerd), so
  that no pod or build resolves a name; the step's container shares the host's network and
  does what setup does on the host (apt-get, pip), so it gets the host's
  ``/etc/resolv.conf``. Without it, its first command failed: ``Err:1
  http://deb.debian.org/debian bookworm InRelease  Temporary failure resolving
  'deb.debian.org'``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from devkit.dockerd import DockerEngine, why_no_engine
from devkit.images import DEBIAN_SOURCES, HOST_CA_BUNDLE

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "e2e-kind.yaml"
STEP = "Setup, then tests/e2e with JM_E2E_BACKEND=kind, in Debian bookworm"
DEBIAN_IMAGE = "debian:bookworm"
CONTAINER_RUN = "docker run --rm "
# What the step's container takes from the host (see above), host path -> its path there.
HOST_FILES = {
    HOST_CA_BUNDLE: "/usr/local/share/ca-certificates/jm-host-bundle.crt",
    "/etc/resolv.conf": "/etc/resolv.conf",
}


def step_script(workflow: Path = WORKFLOW, name: str = STEP) -> str:
    """The ``run:`` script of the workflow's step ``name``."""
    document = yaml.safe_load(workflow.read_text())
    (job,) = document["jobs"].values()
    (step,) = [step for step in job["steps"] if step.get("name") == name]
    script: str = step["run"]
    return script


def local_script(script: str) -> str:
    """The step's script with HOST_FILES mounted read-only into its container."""
    if script.count(CONTAINER_RUN) != 1:
        raise ValueError(f"expected one `{CONTAINER_RUN.strip()}` in the step:\n{script}")
    mounts = "".join(f"-v {host}:{inside}:ro " for host, inside in HOST_FILES.items())
    return script.replace(CONTAINER_RUN, CONTAINER_RUN + mounts)


# The official image's apt sources are /etc/apt/sources.list.d/debian.sources (deb822);
# mmdebstrap names what it reads on stdin 0000main.sources. The step's setup reads the
# official name (devkit.images.DEBIAN_SOURCES feeds its own mmdebstrap builds); without it,
# every e2e test in the step failed: "FileNotFoundError: [Errno 2] No such file or
# directory: '/etc/apt/sources.list.d/debian.sources'".
SOURCES_AS_OFFICIAL = (
    'rm "$1"/etc/apt/sources.list.d/*.sources && '
    f'cp {DEBIAN_SOURCES} "$1/etc/apt/sources.list.d/{DEBIAN_SOURCES.name}"'
)


def load_debian_image(engine: DockerEngine, workdir: Path) -> None:
    """``debian:bookworm`` from Debian's packages (minbase), into the engine."""
    rootfs = workdir / "bookworm.tar"
    with DEBIAN_SOURCES.open("rb") as sources:
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                f"--customize-hook={SOURCES_AS_OFFICIAL}",
                "bookworm",
                str(rootfs),
                "-",
            ],
            stdin=sources,
            check=True,
            capture_output=True,
        )
    engine.docker("import", "--change", 'CMD ["bash"]', str(rootfs), DEBIAN_IMAGE, timeout=600)
    rootfs.unlink()


def run_workflow(workdir: Path) -> int:
    """Run the e2e-kind workflow's step here; its exit status."""
    reason = why_no_engine()
    if reason:
        print(f"jm-dev workflow: {reason}", file=sys.stderr)
        return 2
    checkout = workdir / "checkout"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(checkout)], check=True)
    engine = DockerEngine(workdir / "dockerd").start()
    try:
        started = time.monotonic()
        load_debian_image(engine, workdir)
        print(f"debian:bookworm made and loaded in {time.monotonic() - started:.0f} s", flush=True)
        started = time.monotonic()
        result = subprocess.run(
            [
                "bash",
                "-euo",
                "pipefail",
                "-c",
                local_script(step_script(checkout / WORKFLOW.relative_to(REPO))),
            ],
            cwd=checkout,
            env=engine.env(),
            check=False,
        )
        print(f"the step ran {time.monotonic() - started:.0f} s: exit {result.returncode}")
        return result.returncode
    finally:
        engine.stop()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="jm-workflow-") as tmp:
        return run_workflow(Path(tmp))
