"""The documents' ``docker`` commands, run on an engine of ours (devkit.dockerd).

The README tells a user how to build our images with Docker and push them to a registry.
Here those very lines are read out of the documents' ``bash`` blocks and run by bash, with
the documents' own variables (``REGISTRY``, ``TAG``) set, and with the two build arguments
the README names for a machine like this one, where nothing can be pulled:

- ``BASE_IMAGE``: the Debian base our other images use (devkit.images' ``python-base``, made
  by mmdebstrap from Debian's packages), loaded into the engine;
- ``PIP_INDEX_URL`` (+ ``PIP_TRUSTED_HOST``): the PyPI relay on the engine's bridge
  (devkit.pypi_relay), since a build step cannot reach PyPI itself.

    documented_commands(prefixes) -> list[str]      # the lines, as written
    with_build_arguments(line, arguments) -> str     # `docker build ...` plus --build-arg
    build_target(line, variables) -> (Dockerfile, tag, context)
    load_python_base(engine) -> str                  # the base image's name in the engine
"""

from __future__ import annotations

import re
import shlex
import string
import tempfile
from collections.abc import Mapping
from pathlib import Path

from devkit.dockerd import DockerEngine
from devkit.images import Builder, build_lock
from devkit.markdown import fenced_blocks

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = (REPO / "README.md", REPO / "CONTRIBUTING.md")
# Options of `docker build` (other than -f and -t) whose value may be the next word.
VALUED_OPTIONS = {"--build-arg", "--label", "--network", "--platform", "--target"}


def documented_commands(
    prefixes: tuple[str, ...] = ("docker build ", "docker push "),
    documents: tuple[Path, ...] = DOCUMENTS,
) -> list[str]:
    """Every line of a ``bash`` block of the documents that starts with one of ``prefixes``
    (continuation lines joined), as written, in document order."""
    found = []
    for document in documents:
        for block in fenced_blocks(document.read_text(), "bash"):
            for line in re.sub(r"\\\n\s*", "", block).splitlines():
                if line.strip().startswith(prefixes):
                    found.append(line.strip())
    return found


def with_build_arguments(line: str, arguments: Mapping[str, str]) -> str:
    """``docker build ...`` with ``--build-arg=NAME=value`` for each of ``arguments`` right
    after ``build``; the rest of the line stays as written."""
    if not line.startswith("docker build "):
        raise ValueError(f"not a docker build line: {line}")
    extra = " ".join(shlex.quote(f"--build-arg={n}={v}") for n, v in arguments.items())
    return line.replace("docker build ", f"docker build {extra} ", 1)


def build_target(line: str, variables: Mapping[str, str]) -> tuple[Path, str, Path]:
    """(Dockerfile, tag, context) of a ``docker build`` line with ``variables`` expanded,
    paths from the repository: ``-f``/``--file`` (default ``<context>/Dockerfile``),
    ``-t``/``--tag`` and the context."""
    words = shlex.split(string.Template(line).substitute(variables))
    options = {"-f": "", "--file": "", "-t": "", "--tag": ""}
    positional = []
    rest = iter(words[2:])
    for word in rest:
        name, equals, value = word.partition("=")
        if name in options:
            options[name] = value if equals else next(rest)
        elif name in VALUED_OPTIONS and not equals:
            next(rest)
        elif not word.startswith("-"):
            positional.append(word)
    (context,) = positional
    dockerfile = options["-f"] or options["--file"] or str(Path(context) / "Dockerfile")
    tag = options["-t"] or options["--tag"]
    return (REPO / dockerfile).resolve(), tag, (REPO / context).resolve()


def load_python_base(engine: DockerEngine) -> str:
    """The Debian base of our images (built by devkit.images if needed), loaded into the
    engine under its own name; returns that name."""
    builder = Builder(progress=lambda line: None)
    recipe = builder.recipes["python-base"]
    with build_lock(builder), tempfile.TemporaryDirectory(prefix="jm-docker-base-") as tmp:
        builder.build(recipe)
        archive = Path(tmp) / "python-base.tar"
        builder.buildah.export(recipe.name, archive)
        engine.docker("load", "--input", str(archive), timeout=600)
    return recipe.name
