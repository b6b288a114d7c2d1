"""manifests/: the plain-YAML install file stays in sync with the chart; the example CR renders."""

from __future__ import annotations

import difflib
import subprocess
import sys
from collections import Counter

import yaml

from devkit.kubetools import load_yaml_documents
from devkit.manifests import (
    EXAMPLE_CR,
    NAMESPACE,
    REGENERATE,
    RELEASE_MANIFEST,
    chart_crd_files,
    render_release_manifest,
)


def test_release_manifest_matches_a_fresh_render_of_the_chart() -> None:
    fresh = render_release_manifest()
    committed = RELEASE_MANIFEST.read_text() if RELEASE_MANIFEST.exists() else ""
    if committed != fresh:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    fresh.splitlines(keepends=True),
                    "committed",
                    "fresh render",
                )
            )[:60]
        )
        raise AssertionError(
            f"{RELEASE_MANIFEST.relative_to(RELEASE_MANIFEST.parents[1])} is out of date with "
            f"charts/jewelry-monitoring: regenerate it with `.venv/bin/{REGENERATE}` and commit "
            f"it.\n{diff}"
        )


def test_release_manifest_holds_namespace_crds_and_the_operator() -> None:
    documents = load_yaml_documents(RELEASE_MANIFEST.read_text())
    kinds = Counter(document["kind"] for document in documents)
    crd_count = sum(len(load_yaml_documents(path.read_text())) for path in chart_crd_files())
    assert kinds["Namespace"] == 1
    assert kinds["CustomResourceDefinition"] == crd_count
    assert kinds["Deployment"] == 1
    assert kinds["ServiceAccount"] == 1
    # Namespace and CRDs come first, so a single `kubectl apply` creates them before use.
    assert documents[0]["kind"] == "Namespace"
    assert all(d["kind"] == "CustomResourceDefinition" for d in documents[1 : 1 + crd_count])
    for document in documents:
        if document["kind"] in ("Deployment", "ServiceAccount"):
            assert document["metadata"]["namespace"] == NAMESPACE
    assert "Secret" not in kinds


def test_example_cr_renders_the_expected_children() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jewelry_monitoring.cli", "render", "-f", str(EXAMPLE_CR)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    objects = list(yaml.safe_load_all(result.stdout))
    kinds = Counter(obj["kind"] for obj in objects)
    for kind in ("ServiceMonitor", "PrometheusRule", "Deployment", "Service"):
        assert kinds[kind] >= 1, f"no {kind} in {dict(kinds)}"
    # postgres, redis, nginx, celery exporters: one Deployment each.
    assert kinds["Deployment"] == 4, dict(kinds)
    # Dashboards come from the chart (one set for every CR); per-CR ones are an opt-in.
    assert "ConfigMap" not in kinds and "DaemonSet" not in kinds
    assert "Secret" not in kinds  # the operator references Secrets, never creates them
    example = yaml.safe_load(EXAMPLE_CR.read_text())
    for obj in objects:
        assert obj["metadata"]["namespace"] == example["metadata"]["namespace"]
    monitors = [o for o in objects if o["kind"] in ("ServiceMonitor", "PrometheusRule")]
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
