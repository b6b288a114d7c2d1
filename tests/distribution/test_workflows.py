"""The GitHub Actions workflows and the release they make, checked here without GitHub.

actionlint (built by setup, with shellcheck for the ``run:`` scripts) validates every workflow;
then what the release publishes is compared with what the rest of the repository uses: the
images the local builds make (devkit.images), the chart's default image, helm's pinned
version, and the Kubernetes versions the tests run on against the chart's ``kubeVersion``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit import images as img
from devkit import release
from devkit.kindnode import kube_version
from devkit.toolchain import binary
from devkit.workflow_local import step_script

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
TOOLCHAIN = REPO / "tests" / "toolchain"


def workflow(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key "on" as True.
    loaded["on"] = loaded.pop(True, loaded.get("on"))
    return loaded


def steps(document: dict[str, Any], job: str | None = None) -> list[dict[str, Any]]:
    """The steps of ``job``, or of the workflow's one job."""
    if job is None:
        (only,) = document["jobs"].values()
        return list(only["steps"])
    return list(document["jobs"][job]["steps"])


def pinned(name: str) -> str:
    found = re.search(rf"^{name}=(\S+)$", (TOOLCHAIN / "versions.env").read_text(), re.M)
    assert found, name
    return found[1]


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck is missing: run `bash tests/toolchain/setup`"
    return subprocess.run(
        [str(binary("actionlint")), f"-shellcheck={shellcheck}", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_workflow_passes_actionlint() -> None:
    files = sorted(WORKFLOWS.glob("*.y*ml"))
    assert {f.name for f in files} >= {"release.yaml", "e2e-kind.yaml"}
    result = actionlint(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    """The check above can fail: an unknown context and an unquoted shell variable."""
    broken = tmp_path / ".github" / "workflows" / "broken.yaml"
    broken.parent.mkdir(parents=True)
    text = (WORKFLOWS / "release.yaml").read_text()
    text = text.replace("github.repository_owner", "github.repository_ownr")
    text = text.replace('"$GITHUB_REF_NAME"', "$GITHUB_REF_NAME")
    broken.write_text(text)
    result = actionlint(broken)
    assert result.returncode == 1
    assert "repository_ownr" in result.stdout
    assert "SC2086" in result.stdout  # shellcheck ran on the run: script


def test_the_release_runs_on_version_tags_only_with_the_least_permissions() -> None:
    document = workflow("release.yaml")
    assert document["on"] == {"push": {"tags": ["v*"]}}
    assert document["permissions"] == {"contents": "read"}
    jobs = document["jobs"]
    assert jobs["release"]["permissions"] == {"contents": "read", "packages": "write"}
    # The test jobs keep the workflow's read-only token.
    assert [name for name, job in jobs.items() if "permissions" in job] == ["release"]


def test_the_release_publishes_only_once_the_tests_passed() -> None:
    """issue 18: the release workflow runs the tests before it publishes."""
    jobs = workflow("release.yaml")["jobs"]
    assert sorted(jobs["release"]["needs"]) == ["e2e-kind", "tests"]
    (run,) = [s["run"] for s in steps(workflow("release.yaml"), "tests") if "run" in s]
    assert "debian:bookworm" in run
    assert run.index("bash tests/toolchain/setup") < run.index("bash tests/check")
    # Every suite but the local node's, which needs a cgroup v1 host (kind covers pods).
    ignored = re.findall(r"--ignore=(\S+)", run)
    assert sorted(ignored) == ["tests/e2e", "tests/node"]
    assert jobs["e2e-kind"] == {"uses": "./.github/workflows/e2e-kind.yaml"}
    assert "workflow_call" in workflow("e2e-kind.yaml")["on"]
    header = (WORKFLOWS / "release.yaml").read_text().split("\nname:")[0]
    assert "Change visibility -> Public" in header  # the one-time step of a fork


def test_the_release_builds_the_images_built_here_from_the_same_dockerfiles() -> None:
    """Each pushed image is one devkit.images builds locally (Dockerfile and context), under
    ghcr.io/<owner>/ with its short name, tagged with the checked version."""
    local = {
        recipe.short_name: recipe
        for recipe in img.recipes()
        if recipe.short_name in (release.OPERATOR_IMAGE, release.SHOP_IMAGE)
    }
    pushed = {}
    for step in steps(workflow("release.yaml"), "release"):
        if step.get("uses", "").startswith("docker/build-push-action@"):
            settings = step["with"]
            name, _, tag = settings["tags"].rpartition(":")
            assert name.startswith("${{ steps.registry.outputs.prefix }}/")
            assert tag == "${{ steps.version.outputs.version }}"
            assert settings["push"] is True
            pushed[name.rpartition("/")[2]] = (settings["file"], settings["context"])
    assert set(pushed) == set(local)
    assert pushed[release.OPERATOR_IMAGE] == ("operator/Dockerfile", ".")
    assert pushed[release.SHOP_IMAGE] == ("app/Dockerfile", "app")
    builds = {
        "operator/Dockerfile": REPO / "operator" / "Dockerfile",
        "app/Dockerfile": REPO / "app" / "Dockerfile",
    }
    for dockerfile, context in pushed.values():
        assert (REPO / context).is_dir() and builds[dockerfile].is_file()


def test_the_release_pushes_the_chart_pointing_at_the_pushed_operator() -> None:
    release_steps = steps(workflow("release.yaml"), "release")
    (chart_step,) = [s for s in release_steps if "helm push" in s.get("run", "")]
    script = chart_step["run"]
    assert (
        'python3 tests/devkit/release.py chart-image "$PREFIX/jewelry-monitoring-operator"'
        in script
    )
    assert script.index("chart-image") < script.index("helm package") < script.index("helm push")
    assert re.search(
        r'helm push "dist/jewelry-monitoring-\$VERSION\.tgz" "oci://\$PREFIX/charts"', script
    )
    (helm,) = [s for s in release_steps if s.get("uses", "").startswith("azure/setup-helm@")]
    assert helm["with"]["version"] == pinned("HELM_VERSION")
    (version_step,) = [s for s in release_steps if s.get("id") == "version"]
    assert "tests/devkit/release.py version" in version_step["run"]


def test_the_version_check_refuses_a_tag_the_repository_does_not_carry() -> None:
    chart = yaml.safe_load((release.CHART / "Chart.yaml").read_text())
    assert release.release_version(f"v{chart['version']}") == chart["version"]
    with pytest.raises(release.ReleaseError, match=r"Chart\.yaml version"):
        release.release_version("v99.0.0")
    with pytest.raises(release.ReleaseError, match="not v<major>"):
        release.release_version("latest")


def test_the_packaged_chart_runs_the_image_the_release_pushed(tmp_path: Path) -> None:
    chart = tmp_path / "jewelry-monitoring"
    shutil.copytree(release.CHART, chart)
    release.set_chart_image(
        "ghcr.io/someone/jewelry-monitoring-operator", values=chart / "values.yaml"
    )
    rendered = subprocess.run(
        [
            str(binary("helm")),
            "template",
            "jm",
            str(chart),
            "--show-only",
            "templates/deployment.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    version = yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
    images = re.findall(r"^\s+image: (\S+)$", rendered, re.M)
    assert images == [f'"ghcr.io/someone/jewelry-monitoring-operator:{version}"'] or images == [
        f"ghcr.io/someone/jewelry-monitoring-operator:{version}"
    ]
    # The nodeExporter's image.repository is not touched.
    values = yaml.safe_load((chart / "values.yaml").read_text())
    assert values["nodeExporter"]["image"]["repository"] == "quay.io/prometheus/node-exporter"
    with pytest.raises(release.ReleaseError):
        release.set_chart_image("ghcr.io/someone/other", values=chart / "values.yaml")


def _kind_node_minor() -> int:
    """The Kubernetes minor of the kind clusters' node image (devkit.kindnode builds it from
    setup's Kubernetes build; the e2e-kind workflow's cluster runs it)."""
    return int(kube_version().split(".")[1])


def _control_plane_minor(toolchain: str = "kube") -> int:
    """The Kubernetes minor a control plane of the tests is built at: tests/toolchain/kube
    (the newest) or tests/toolchain/kube-oldest (the oldest the chart claims)."""
    go_mod = (TOOLCHAIN / toolchain / "go.mod").read_text()
    found = re.search(r"^require k8s\.io/kubernetes v1\.(\d+)\.", go_mod, re.M)
    assert found
    return int(found[1])


def test_kube_version_starts_at_the_oldest_kubernetes_the_tests_run_on() -> None:
    chart = yaml.safe_load((release.CHART / "Chart.yaml").read_text())
    oldest = min(_kind_node_minor(), _control_plane_minor("kube-oldest"))
    assert chart["kubeVersion"] == f">=1.{oldest}.0-0"

    def renders_on(version: str) -> bool:
        command = [str(binary("helm")), "template", "jm", str(release.CHART)]
        result = subprocess.run([*command, "--kube-version", version], capture_output=True)
        return result.returncode == 0

    assert renders_on(f"1.{oldest}.0") and renders_on(f"1.{_control_plane_minor()}.4")
    assert not renders_on(f"1.{oldest - 1}.9")


def test_the_kind_workflow_runs_the_e2e_suite_on_its_kind_backend() -> None:
    document = workflow("e2e-kind.yaml")
    assert {"push", "pull_request"} <= set(document["on"])
    (run,) = [s["run"] for s in steps(document) if "docker run" in s.get("run", "")]
    assert "-e JM_E2E_BACKEND=kind" in run
    # setup builds the node image's programs, and the kind tests are selected (both opt-in).
    assert "-e JM_SETUP_KIND=1" in run and '.venv/bin/pytest -m "" ' in run
    # Our own dockerd runs in the container (devkit.dockerd), its root on a volume.
    assert "-v /var/run/docker.sock" not in run
    assert "--privileged" in run and "-v /var/lib/jm-docker " in run
    # The step devkit.workflow_local runs here is this one.
    assert run == step_script()
    assert "--network host" in run  # kind's API server is on the host's loopback
    assert "debian:bookworm" in run
    assert run.index("bash tests/toolchain/setup") < run.index(".venv/bin/pytest -m")
