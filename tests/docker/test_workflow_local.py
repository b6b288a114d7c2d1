"""devkit.workflow_local: what `jm-dev workflow e2e-kind` runs is the workflow's own step,
changed in one spelled-out way, and the debian:bookworm it runs in is Debian's."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.dockerd import DockerEngine
from devkit.images import DEBIAN_SOURCES, HOST_CA_BUNDLE
from devkit.workflow_local import (
    DEBIAN_IMAGE,
    load_debian_image,
    local_script,
    step_script,
)

pytestmark = pytest.mark.timeout(900)


def test_the_local_step_is_the_workflows_with_the_ca_bundle_and_resolver_mounted() -> None:
    script = step_script()
    assert "debian:bookworm" in script and "bash tests/toolchain/setup" in script
    local = local_script(script)
    mounts = (
        # Where update-ca-certificates finds it when the step installs ca-certificates (the
        # bundle itself is rewritten then: a mount over it made that install fail).
        f"-v {HOST_CA_BUNDLE}:/usr/local/share/ca-certificates/jm-host-bundle.crt:ro "
        # The engine's own resolver answers nothing; the step runs apt-get and pip first.
        "-v /etc/resolv.conf:/etc/resolv.conf:ro "
    )
    assert local.replace(mounts, "", 1) == script
    assert local.index(mounts) == local.index("docker run --rm ") + len("docker run --rm ")
    with pytest.raises(ValueError, match="expected one"):
        local_script(script + "\ndocker run --rm debian:bookworm true\n")


@pytest.mark.kind  # only `jm-dev workflow e2e-kind` needs it (80 s of mmdebstrap)
def test_debian_bookworm_is_made_from_debians_packages(
    engine: DockerEngine, tmp_path: Path
) -> None:
    load_debian_image(engine, tmp_path)
    release = engine.docker("run", "--rm", "--network=none", DEBIAN_IMAGE, "cat", "/etc/os-release")
    assert "VERSION_CODENAME=bookworm" in release
    # apt is there, with the host's sources where the official image has them (the
    # workflow's step runs apt-get first; its setup reads them there).
    sources = engine.docker(
        "run", "--rm", "--network=none", DEBIAN_IMAGE, "ls", "/etc/apt/sources.list.d"
    )
    assert sources.split() == ["debian.sources"]
    official = engine.docker(
        "run",
        "--rm",
        "--network=none",
        DEBIAN_IMAGE,
        "cat",
        "/etc/apt/sources.list.d/debian.sources",
    )
    assert official == DEBIAN_SOURCES.read_text()
    assert list(tmp_path.iterdir()) == []
