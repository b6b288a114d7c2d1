"""The chart's standard values and conventions, rendered with the real ``helm``."""

from __future__ import annotations

from typing import Any

from devkit.operator_process import render_chart

RELEASE, NAMESPACE = "jm", "ops"


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return render_chart(RELEASE, NAMESPACE, values)


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_readiness_and_liveness_probes_are_distinct() -> None:
    """kube-score counts two probes on the same path and port as identical: readiness is
    /readyz on the metrics port (watches listed, leading or standing by), liveness kopf's
    /healthz on its own port (no stuck reconcile)."""
    container = operator_container(render())
    liveness, readiness = container["livenessProbe"], container["readinessProbe"]
    assert liveness["httpGet"] == {"path": "/healthz", "port": "health"}
    assert readiness["httpGet"] == {"path": "/readyz", "port": "metrics"}
