"""operator/Dockerfile (and app/Dockerfile): structural checks, without building.

tests/images builds both with buildah on a local Debian base; these checks stay fast and
name the rule a Dockerfile breaks.

Parses the Dockerfile's instructions and checks what the chart relies on: a non-root
numeric user equal to the chart's podSecurityContext, pinned base images, the
``jewelry-monitoring`` entrypoint with ``run`` as default command, no bytecode writes on a
read-only root filesystem, and a build context (.dockerignore) that contains what it copies.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "operator" / "Dockerfile"
VALUES = REPO / "charts" / "jewelry-monitoring" / "values.yaml"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    if current:
        logical.append(current)
    pairs = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def _args(parsed: list[tuple[str, str]]) -> dict[str, str]:
    found = {}
    for keyword, rest in parsed:
        if keyword == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            found[name] = value
    return found


def test_base_images_are_pinned_and_multi_stage(parsed: list[tuple[str, str]]) -> None:
    args = _args(parsed)
    images = []
    for keyword, rest in parsed:
        if keyword == "FROM":
            image = rest.split()[0]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], image)
            images.append(image)
    assert len(images) >= 2, "expected a build stage and a runtime stage"
    for image in images:
        name, _, tag = image.rpartition(":") if ":" in image else (image, "", "")
        assert tag and tag != "latest", f"base image {image} must have an explicit tag"
        assert name.startswith("python") and tag.startswith("3.11"), image


def test_runs_as_the_charts_non_root_user(parsed: list[tuple[str, str]]) -> None:
    users = [rest for keyword, rest in parsed if keyword == "USER"]
    assert users, "no USER: the image would run as root"
    user, _, group = users[-1].partition(":")
    security = yaml.safe_load(VALUES.read_text())["podSecurityContext"]
    assert user.isdigit() and int(user) != 0, "numeric non-root uid (runAsNonRoot needs it)"
    assert int(user) == security["runAsUser"]
    assert group and int(group) == security["runAsGroup"]


def test_entrypoint_is_the_cli_with_run_by_default(parsed: list[tuple[str, str]]) -> None:
    entrypoints = [json.loads(rest) for keyword, rest in parsed if keyword == "ENTRYPOINT"]
    commands = [json.loads(rest) for keyword, rest in parsed if keyword == "CMD"]
    operator = tomllib.loads((REPO / "operator" / "pyproject.toml").read_text())["project"]
    assert entrypoints[-1] == ["jewelry-monitoring"]
    assert "jewelry-monitoring" in operator["scripts"]
    assert commands[-1] == ["run"]


def test_read_only_root_filesystem_friendly(parsed: list[tuple[str, str]]) -> None:
    env = " ".join(rest for keyword, rest in parsed if keyword == "ENV")
    assert re.search(r"\bPYTHONDONTWRITEBYTECODE=1\b", env)
    values = yaml.safe_load(VALUES.read_text())
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    exposed = [rest for keyword, rest in parsed if keyword == "EXPOSE"]
    assert str(values["livenessPort"]) in " ".join(exposed)


def test_build_context_contains_what_is_copied(parsed: list[tuple[str, str]]) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pattern = pattern.lstrip("!")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern.rstrip("/") + "/"):
                keep = negate
        return keep

    for keyword, rest in parsed:
        if keyword != "COPY" or "--from=" in rest:
            continue
        sources = rest.split()[:-1]
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such path in the repository"
            assert included(source), f"COPY {source} is excluded by .dockerignore"
    assert not included("app/manage.py"), "the app is not part of the operator image"
    assert not included("tests/devkit/cli.py"), "nor is the developer tooling (jm-dev)"
    assert not included("pyproject.toml"), "nor the development workspace's distribution"
    assert not included(".venv/bin/python")
    assert included("LICENSE") and included("operator/pyproject.toml")


# --------------------------------------------------------------------------- both images

APP_DOCKERFILE = REPO / "app" / "Dockerfile"
# Debian's base-passwd: the users and groups every Debian-based image (python:*-bookworm and
# our local base alike) already has.
BASE_PASSWD = Path("/usr/share/base-passwd")


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, APP_DOCKERFILE], ids=["operator", "app"])
def test_every_stage_is_built_from_the_base_image_arg(dockerfile: Path) -> None:
    """A build argument selects the base (tests/devkit/images.py passes a local one); its
    default stays the upstream image users get."""
    parsed = instructions(dockerfile.read_text())
    assert _args(parsed).get("BASE_IMAGE") == "python:3.11-slim-bookworm"
    stages = [rest.split()[0] for keyword, rest in parsed if keyword == "FROM"]
    assert stages and all(stage == "${BASE_IMAGE}" for stage in stages), stages


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, APP_DOCKERFILE], ids=["operator", "app"])
def test_created_users_and_groups_do_not_exist_in_debian(dockerfile: Path) -> None:
    """groupadd/useradd of a name Debian already has fails the build (exit 9): e.g. the
    group ``operator`` (gid 37) is in every Debian base."""
    taken = {
        kind: {line.split(":")[0] for line in (BASE_PASSWD / f"{kind}.master").read_text().split()}
        for kind in ("group", "passwd")
    }
    runs = " ".join(
        rest for keyword, rest in instructions(dockerfile.read_text()) if keyword == "RUN"
    )
    created = {
        "group": re.findall(r"groupadd\b[^&;]*?\s([a-z_][\w-]*)\s*(?:&&|;|$)", runs),
        "passwd": re.findall(r"useradd\b[^&;]*?\s([a-z_][\w-]*)\s*(?:&&|;|$)", runs),
    }
    assert created["group"] and created["passwd"], created
    for kind, names in created.items():
        assert not set(names) & taken[kind], f"{dockerfile}: {kind} {names} exists in Debian"
