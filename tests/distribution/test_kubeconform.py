"""kubeconform -strict on everything we ship and everything the operator creates, offline.

The schemas come from the local control plane's real kube-apiserver (built-in kinds) and
from the real CRDs (prometheus-operator's and ours): see devkit.schemas.
Every resource must be validated: a missing schema is an error, never a skip.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devkit.manifests import EXAMPLE_CR, MANIFESTS, RELEASE_MANIFEST, chart_crd_files, helm_template
from devkit.schemas import fetch_openapi_v2, kubeconform, schema_path, write_schemas
from devkit.toolchain import prometheus_operator_crds

pytestmark = pytest.mark.cluster

CHART_VALUE_SETS = {
    "defaults": (),
    "replicas-2": ("--set", "replicas=2"),
    "watch-namespaces": ("--set-json", 'watchNamespaces=["a","b"]'),
    "replicas-2-watch-namespaces": (
        "--set",
        "replicas=2",
        "--set-json",
        'watchNamespaces=["a","b"]',
    ),
    "node-exporter": (
        "--set",
        "nodeExporter.enabled=true,nodeExporter.serviceMonitor.enabled=true,"
        "nodeExporter.prometheusRule.enabled=true",
    ),
    "network-policy": (
        "--set",
        "networkPolicy.enabled=true",
        "--set-json",
        'networkPolicy.apiServer.cidrs=["10.0.0.0/24"]',
    ),
    "standard-values": (
        "--set",
        "priorityClassName=high,nodeExporter.enabled=true,additionalLabels.team=platform,"
        "serviceAccount.annotations.a=b,global.imageRegistry=mirror.example.com",
        "--set-json",
        'imagePullSecrets=[{"name":"regcred"}]',
        "--set-json",
        'extraEnv=[{"name":"HTTPS_PROXY","value":"http://proxy:3128"}]',
        "--set-json",
        'topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"kubernetes.io/hostname",'
        '"whenUnsatisfiable":"ScheduleAnyway"}]',
    ),
}


@pytest.fixture(scope="module")
def schema_location(admin_api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("kubeconform-schemas")
    return write_schemas(
        directory,
        fetch_openapi_v2(admin_api),
        [*prometheus_operator_crds(), *chart_crd_files()],
    )


def assert_all_valid(files: list[Path], schema_location: str, expected: int) -> list[str]:
    report = kubeconform(files, schema_location)
    problems = report.problems()
    assert not problems, "\n".join(problems)
    assert report.summary == {
        "valid": expected,
        "invalid": 0,
        "errors": 0,
        "skipped": 0,
    }, report.summary
    assert report.returncode == 0, report.stderr
    return sorted({r["kind"] for r in report.resources})


def count(path: Path) -> int:
    return sum(1 for d in yaml.safe_load_all(path.read_text()) if d)


def test_schemas_cover_builtin_and_custom_kinds(schema_location: str) -> None:
    directory = Path(schema_location.split("/{{")[0])
    for gvk in (
        ("apps", "v1", "Deployment"),
        ("", "v1", "Service"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("monitoring.coreos.com", "v1", "ServiceMonitor"),
        ("monitoring.jewelry.io", "v1alpha1", "JewelryMonitoring"),
        ("rbac.authorization.k8s.io", "v1", "Role"),
    ):
        assert schema_path(directory, gvk).is_file(), gvk


def test_schemas_reject_what_the_api_server_would(schema_location: str, tmp_path: Path) -> None:
    """The schemas are strict enough to catch a typo and a wrong type."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump_all(
            [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": "x"},
                    "spec": {"replica": 1, "selector": {}, "template": {}},
                },
                {
                    "apiVersion": "monitoring.coreos.com/v1",
                    "kind": "ServiceMonitor",
                    "metadata": {"name": "x"},
                    "spec": {"endpoints": [{"port": 8000}], "selector": {}},
                },
                {
                    "apiVersion": "monitoring.jewelry.io/v1alpha1",
                    "kind": "JewelryMonitoring",
                    "metadata": {"name": "x"},
                    "spec": {"app": {"podSelector": {"a": "b"}, "colour": "red"}},
                },
            ]
        )
    )
    report = kubeconform([bad], schema_location)
    assert report.summary["invalid"] == 3, report.stdout


@pytest.mark.parametrize("extra", CHART_VALUE_SETS.values(), ids=CHART_VALUE_SETS.keys())
def test_chart_renders_are_valid(
    extra: tuple[str, ...], schema_location: str, tmp_path: Path
) -> None:
    rendered = tmp_path / "chart.yaml"
    rendered.write_text(helm_template(extra_args=extra))
    kinds = assert_all_valid([rendered], schema_location, count(rendered))
    assert "Deployment" in kinds and "ClusterRole" in kinds


def test_helm_test_hook_is_valid(schema_location: str, tmp_path: Path) -> None:
    rendered = tmp_path / "test-hook.yaml"
    only = ("--show-only", "templates/tests/installation.yaml")
    rendered.write_text(helm_template(extra_args=only, tests=True))
    assert assert_all_valid([rendered], schema_location, 1) == ["Pod"]


def test_shipped_manifests_are_valid(schema_location: str) -> None:
    files = [RELEASE_MANIFEST, EXAMPLE_CR, *sorted((MANIFESTS / "dev").glob("*.yaml"))]
    kinds = assert_all_valid(files, schema_location, sum(count(f) for f in files))
    assert {"CustomResourceDefinition", "Namespace", "JewelryMonitoring"} <= set(kinds)


def _render(cr: dict[str, Any], tmp_path: Path) -> Path:
    source = tmp_path / "cr.yaml"
    source.write_text(yaml.safe_dump(cr))
    result = subprocess.run(
        [sys.executable, "-m", "jewelry_monitoring.cli", "render", "-f", str(source)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(result.stdout)
    return rendered


def test_operator_output_for_the_example_is_valid(schema_location: str, tmp_path: Path) -> None:
    example = yaml.safe_load(EXAMPLE_CR.read_text())
    # Its own dashboards too, so their ConfigMaps are checked as well.
    example["spec"]["dashboards"] = {"enabled": True}
    rendered = _render(example, tmp_path)
    kinds = assert_all_valid([rendered], schema_location, count(rendered))
    assert {
        "ServiceMonitor",
        "PrometheusRule",
        "Deployment",
        "Service",
        "ConfigMap",
    } <= set(kinds), kinds
