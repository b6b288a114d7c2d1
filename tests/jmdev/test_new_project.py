"""The first hour's new project (devkit.new_project), made and checked here: the READMEs'
snippets it takes give a project that ``manage.py check`` passes without a finding, and
whose start queries nothing while Django initializes its apps.

The cluster walk-through (tests/e2e/test_user_first_hour.py) runs the same project in a pod;
this catches a README snippet that no longer works in minutes less and without the node.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devkit.new_project import PROJECT, STARTPROJECT, WORKERS, instrument
from devkit.shopapp import shop_env


def test_the_readme_instrumented_project_passes_its_check(tmp_path: Path) -> None:
    subprocess.run(STARTPROJECT, cwd=tmp_path, check=True, timeout=120)
    instrument(tmp_path)
    project = tmp_path / PROJECT
    conf = (project / "gunicorn.conf.py").read_text()
    assert "control_socket_disable = True" in conf and f"workers = {WORKERS}" in conf, conf
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    env = shop_env(
        DJANGO_SETTINGS_MODULE=f"{PROJECT}.settings",
        DJANGO_SECRET_KEY="a-test-key-that-is-long-enough-for-django-to-accept-it-0123456789",
        PROMETHEUS_MULTIPROC_DIR=str(multiproc),
    )
    for command in (["migrate", "--noinput"], ["check"]):
        result = subprocess.run(
            [sys.executable, "-W", "error::RuntimeWarning", "manage.py", *command],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0 and not result.stderr, result.stdout + result.stderr
    assert result.stdout == "System check identified no issues (0 silenced).\n", result.stdout
