"""The README's ``docker build`` and ``docker push`` lines, run by bash as written on our
engine, with ``REGISTRY`` a loopback registry (devkit.registry) and the ``BASE_IMAGE`` and
``PIP_INDEX_URL`` build arguments the README names (see devkit.docker_build); then the
images, removed from the engine and pulled back from the registry, run: the operator prints
its CRD, the shop serves through gunicorn."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.docker_build import (
    REPO,
    build_target,
    documented_commands,
    load_python_base,
    with_build_arguments,
)
from devkit.dockerd import DockerEngine
from devkit.kubetools import wait_for
from devkit.pypi_relay import pypi_relay
from devkit.registry import Registry, registry_server

pytestmark = pytest.mark.timeout(1800)

OPERATOR_DOCKERFILE = REPO / "operator" / "Dockerfile"
SHOP_DOCKERFILE = REPO / "app" / "Dockerfile"
CHART_USER = "10001:10001"  # the chart's podSecurityContext


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    with registry_server() as started:
        yield started


@pytest.fixture(scope="module")
def pushed(engine: DockerEngine, registry: Registry) -> dict[Path, str]:
    """Every documented ``docker build`` and ``docker push`` line run, in order; then the
    images removed from the engine and pulled back from the registry. Dockerfile -> image."""
    variables = {"REGISTRY": f"{registry.host}/jm", "TAG": "docs"}
    base = load_python_base(engine)
    gateway = engine.default_bridge.gateway
    images: dict[Path, str] = {}
    with pypi_relay(gateway) as index:
        arguments = {"BASE_IMAGE": base, "PIP_INDEX_URL": index, "PIP_TRUSTED_HOST": gateway}
        for line in documented_commands():
            run = line
            if line.startswith("docker build "):
                dockerfile, images[dockerfile], _ = build_target(line, variables)
                run = with_build_arguments(line, arguments)
            started = time.monotonic()
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", run],
                cwd=REPO,
                env={**engine.env(), **variables},
                capture_output=True,
                text=True,
                timeout=1500,
            )
            assert result.returncode == 0, f"{line}:\n{result.stderr[-4000:]}"
            print(f"{line}: {time.monotonic() - started:.0f} s")
    for image in images.values():
        engine.docker("rmi", image)
        engine.docker("pull", image, timeout=600)
    return images


def test_the_readme_builds_both_images_and_pushes_them(
    registry: Registry, pushed: dict[Path, str]
) -> None:
    assert set(pushed) == {OPERATOR_DOCKERFILE, SHOP_DOCKERFILE}
    for dockerfile, context in ((OPERATOR_DOCKERFILE, REPO), (SHOP_DOCKERFILE, REPO / "app")):
        # operator/Dockerfile copies operator/... from the repository root; app/Dockerfile's
        # context is app/ (as each Dockerfile's header says).
        (line,) = [
            line
            for line in documented_commands(("docker build ",))
            if build_target(line, {"REGISTRY": "r", "TAG": "t"})[0] == dockerfile
        ]
        assert build_target(line, {"REGISTRY": "r", "TAG": "t"})[2] == context
        repository = pushed[dockerfile].split("/", 1)[1].rsplit(":", 1)[0]
        assert registry.tags(repository) == ["docs"]


@pytest.mark.parametrize(
    "dockerfile", [OPERATOR_DOCKERFILE, SHOP_DOCKERFILE], ids=["operator", "shop"]
)
def test_the_images_run_as_the_charts_user(
    engine: DockerEngine, pushed: dict[Path, str], dockerfile: Path
) -> None:
    image = pushed[dockerfile]
    config = json.loads(engine.docker("image", "inspect", "--format={{json .Config}}", image))
    assert config["User"] == CHART_USER


def test_the_operator_image_prints_the_crd_of_this_checkout(
    engine: DockerEngine, pushed: dict[Path, str]
) -> None:
    image = pushed[OPERATOR_DOCKERFILE]
    printed = engine.docker("run", "--rm", "--network=none", "--read-only", image, "crd")
    local = subprocess.run(
        [sys.executable, "-m", "jewelry_monitoring.cli", "crd"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed == local


def test_the_shop_image_serves_through_gunicorn(
    engine: DockerEngine, pushed: dict[Path, str]
) -> None:
    image = pushed[SHOP_DOCKERFILE]
    # As the chart runs it: read-only root, /tmp writable (the Dockerfile's note).
    container = engine.docker(
        "run", "--detach", "--read-only", "--tmpfs=/tmp", "--env=ALLOWED_HOSTS=*", image
    ).strip()
    try:
        address = engine.docker(
            "inspect", "--format={{.NetworkSettings.IPAddress}}", container
        ).strip()
        # The container's address is on our bridge: host to bridge, nothing leaves.
        url = f"http://{address}:8000/healthz"

        def healthz() -> dict[str, object] | None:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body: dict[str, object] = json.load(response)
                    return body
            except (urllib.error.URLError, ConnectionError):
                return None

        body = wait_for(healthz, timeout=120, interval=1, what=f"{url} to answer")
        assert body["status"] == "ok"
        processes = engine.docker("top", container, "-o", "pid,args")
        assert "gunicorn -c gunicorn.conf.py" in processes, processes
    finally:
        engine.docker("rm", "--force", container)
