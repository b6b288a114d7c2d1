"""operator/Dockerfile: a structural check (no Docker engine here, so it is never built).

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
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoints[-1] == ["jewelry-monitoring"]
    assert "jewelry-monitoring" in scripts
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
    assert not included(".venv/bin/python")
