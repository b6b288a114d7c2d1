"""The operator distribution installed alone in fresh virtualenvs, as a user or the image
installs it (issue 19 item 1, issue 18 item 9):

- with requirements.lock's exact versions (the image's): no ``kubernetes`` package, and
  the memory the operator process has before it sees any object (importing kopf and the
  handlers), a figure of the run (issue 19's goal: at most 60 MiB; 92 MiB with the
  ``kubernetes`` client);
- with the newest versions its ranges allow (`pip install` of the CLI on a laptop): doctor's
  own tests pass with that doctor, and ``kubectl-jm`` is the kubectl plugin.

Needs the package index (pip), as tests/toolchain/setup does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OPERATOR = REPO / "operator"
IMPORT_RSS_GOAL_MIB = 60.0
# What the operator process imports before it sees an object (cli.py's run, then kopf's).
# Its peak resident memory is VmHWM, of this process image only: getrusage's ru_maxrss
# would count the forking parent's (pytest's) memory, which survives exec.
MEASURE = """
import json, sys
import kopf
import jewelry_monitoring.cli, jewelry_monitoring.handlers
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print(json.dumps({
    "max_rss_mib": int(status["VmHWM"].split()[0]) / 1024,
    "kubernetes_imported": "kubernetes" in sys.modules,
}))
"""


def _fresh(directory: Path, *pip_args: str, env: dict[str, str] | None = None) -> Path:
    """A virtualenv with the operator distribution (not editable) and what ``pip_args`` add;
    its python. Built from a copy: setuptools writes build/ into the source directory."""
    source = directory / "source"
    shutil.copytree(OPERATOR, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    venv.create(directory / "venv", with_pip=True)
    python = directory / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *pip_args, str(source)],
        check=True,
        timeout=900,
        env=env,
    )
    return python


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("locked")
    return _fresh(directory, "--constraint", str(OPERATOR / "requirements.lock"))


@pytest.fixture(scope="module")
def newest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """No local wheels nor constraints: what the package index has, newest first."""
    env = {k: v for k, v in os.environ.items() if k not in ("PIP_FIND_LINKS", "PIP_CONSTRAINT")}
    return _fresh(tmp_path_factory.mktemp("newest"), "--no-cache-dir", env=env)


def test_the_image_has_no_kubernetes_client_and_imports_within_the_goal(
    locked: Path, figures: Callable[[str, str, str], None]
) -> None:
    installed = subprocess.run(
        [str(locked), "-m", "pip", "list", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    names = {p["name"].lower() for p in json.loads(installed)}
    assert "kubernetes" not in names and "kopf" in names
    measured = json.loads(
        subprocess.run(
            [str(locked), "-c", MEASURE], check=True, capture_output=True, text=True
        ).stdout
    )
    figures(
        "operator memory",
        "max RSS after importing kopf and the handlers, before any object (goal <= 60)",
        f"{measured['max_rss_mib']:.1f} MiB",
    )
    assert not measured["kubernetes_imported"]
    assert measured["max_rss_mib"] <= IMPORT_RSS_GOAL_MIB


@pytest.mark.cluster
def test_doctor_with_the_newest_allowed_versions_passes_doctors_tests(newest: Path) -> None:
    """Doctor's tests (tests/operator/test_doctor.py), with the doctor they run being the
    one of a virtualenv that has only the CLI, at the newest versions its ranges allow."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(REPO / "tests" / "operator" / "test_doctor.py"),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        env={**os.environ, "JM_DOCTOR_PYTHON": str(newest)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " skipped" not in result.stdout


def test_kubectl_jm_is_the_cli_as_a_kubectl_plugin(newest: Path) -> None:
    """kubectl runs ``kubectl-jm`` from the PATH for ``kubectl jm``: doctor's usage."""
    plugin = newest.parent / "kubectl-jm"
    assert plugin.exists()
    result = subprocess.run(
        [str(plugin), "doctor", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "--prometheus-url" in result.stdout and "--context" in result.stdout
