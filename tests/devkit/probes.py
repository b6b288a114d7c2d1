"""Probe timing: whether a liveness probe can only fail after its readiness probe has."""

from __future__ import annotations

from typing import Any

# The kubelet's defaults for fields a probe leaves out.
_DEFAULTS = {"periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3}


def _field(probe: dict[str, Any], name: str) -> float:
    return float(probe.get(name, _DEFAULTS.get(name, 0)))


def worst_case_seconds_to_fail(probe: dict[str, Any]) -> float:
    """Longest a probe can take to fail once its endpoint stops answering: the first failing
    probe comes up to a period late, then each of failureThreshold probes may time out."""
    period = _field(probe, "periodSeconds")
    return period + _field(probe, "failureThreshold") * period + _field(probe, "timeoutSeconds")


def best_case_seconds_to_fail(probe: dict[str, Any]) -> float:
    """Shortest a probe can take to fail: failureThreshold failures, the first at once."""
    return (_field(probe, "failureThreshold") - 1) * _field(probe, "periodSeconds")


def _port(probe: dict[str, Any]) -> Any:
    return (probe.get("httpGet") or probe.get("tcpSocket") or {}).get("port")


def liveness_problems(container: dict[str, Any]) -> list[str]:
    """Why liveness could fail (restart the container) before readiness did, for any trouble
    of the endpoint, or be the same probe: liveness asks less than readiness (only that the
    port accepts a connection, where readiness asks for a page: kube-score flags identical
    probes); it waits longer for an answer (a slow but answering endpoint only goes unready),
    starts no earlier, and its shortest time to fail lies beyond readiness's longest."""
    liveness, readiness = container["livenessProbe"], container["readinessProbe"]
    problems = []
    if liveness.get("httpGet") is not None and liveness.get("httpGet") == readiness.get("httpGet"):
        problems.append("liveness and readiness are the same probe")
    elif "tcpSocket" not in liveness or _port(liveness) != _port(readiness):
        problems.append("liveness asks more than readiness, or of another port")
    if _field(liveness, "timeoutSeconds") <= _field(readiness, "timeoutSeconds"):
        problems.append("liveness times out no later than readiness: slow answers restart it")
    if _field(liveness, "initialDelaySeconds") < _field(readiness, "initialDelaySeconds"):
        problems.append("liveness starts before readiness")
    if best_case_seconds_to_fail(liveness) <= worst_case_seconds_to_fail(readiness):
        problems.append(
            f"liveness can fail after {best_case_seconds_to_fail(liveness):.0f}s, readiness "
            f"may take {worst_case_seconds_to_fail(readiness):.0f}s"
        )
    return problems
