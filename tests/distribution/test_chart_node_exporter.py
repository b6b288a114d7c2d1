"""The node exporter is the release's: one DaemonSet, off by default, as restricted as
node_exporter allows; and the exporter image allowlist the operator gets from the chart."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from devkit.manifests import CHART
from devkit.operator_process import render_chart
from devkit.probes import liveness_problems
from devkit.toolchain import binary

RELEASE, NAMESPACE = "jm", "ops"
ON = {"nodeExporter.enabled": True}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return render_chart(RELEASE, NAMESPACE, values)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Objects of ``kind``; Services only the node exporter's (not the operator's metrics)."""
    return [
        o
        for o in objects
        if o["kind"] == kind and (kind != "Service" or "node-exporter" in o["metadata"]["name"])
    ]


def test_off_by_default() -> None:
    objects = render()
    assert not of_kind(objects, "DaemonSet")
    assert not of_kind(objects, "Service")
    assert not of_kind(objects, "ServiceMonitor")


def test_one_daemonset_restricted_as_far_as_node_exporter_allows() -> None:
    objects = render(ON)
    [daemonset] = of_kind(objects, "DaemonSet")
    assert daemonset["metadata"]["namespace"] == NAMESPACE
    assert daemonset["metadata"]["name"] == "jm-jewelry-monitoring-node-exporter"
    pod = daemonset["spec"]["template"]["spec"]
    # What it needs: the host's network (node interfaces) and its /proc, /sys and /, read only.
    assert pod["hostNetwork"] is True
    assert pod["hostPID"] is False
    assert {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]} == {
        "proc": "/proc",
        "sys": "/sys",
        "root": "/",
    }
    [container] = pod["containers"]
    assert all(mount["readOnly"] for mount in container["volumeMounts"])
    # Everything else restricted.
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["image"] == "quay.io/prometheus/node-exporter:v1.9.1"
    assert "--web.listen-address=[$(HOST_IP)]:9100" in container["args"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]
    assert container["resources"]["limits"]
    # Its pods must never match the operator's Deployment (or any Service selecting it).
    [operator] = of_kind(objects, "Deployment")
    operator_selector = operator["spec"]["selector"]["matchLabels"].items()
    assert not operator_selector <= pod_labels(daemonset).items()
    assert daemonset["spec"]["selector"]["matchLabels"].items() <= pod_labels(daemonset).items()


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def test_host_port_and_service_monitor_are_configurable() -> None:
    objects = render(
        {
            **ON,
            "nodeExporter.port": 9200,
            "nodeExporter.serviceMonitor": {
                "enabled": True,
                "additionalLabels": {"release": "kps"},
            },
        }
    )
    [daemonset] = of_kind(objects, "DaemonSet")
    [container] = daemonset["spec"]["template"]["spec"]["containers"]
    assert "--web.listen-address=[$(HOST_IP)]:9200" in container["args"]
    assert container["ports"][0]["containerPort"] == 9200
    [service] = of_kind(objects, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 9200, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= pod_labels(daemonset).items()
    [monitor] = of_kind(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    # Off the host network it listens on the pod's address only.
    [pod_network] = of_kind(render({**ON, "nodeExporter.hostNetwork": False}), "DaemonSet")
    [plain] = pod_network["spec"]["template"]["spec"]["containers"]
    assert "--web.listen-address=:9100" in plain["args"]
    assert "env" not in plain


def test_helm_lint_strict_with_everything_on() -> None:
    command = [str(binary("helm")), "lint", "--strict", str(CHART), "--set"]
    command.append(
        "nodeExporter.enabled=true,nodeExporter.serviceMonitor.enabled=true,"
        "nodeExporter.prometheusRule.enabled=true,exporterImageAllowlist={localhost/jm/}"
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def test_image_allowlist_reaches_the_operator() -> None:
    objects = render({"exporterImageAllowlist": ["localhost/jm/", "registry.example/r"]})
    [deployment] = of_kind(objects, "Deployment")
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["JM_ALLOWED_IMAGES"] == "localhost/jm/,registry.example/r"


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"nodeExporter.port": 0}, "/nodeExporter/port"),
        ({"nodeExporter.hostPID": True}, "hostPID"),  # not a knob: never the host's PIDs
        ({"exporterImageAllowlist": ["a/,b/"]}, "/exporterImageAllowlist/0"),
        ({"dashboards.folder": 1}, "/dashboards/folder"),
    ],
)
def test_values_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failure:
        render(values)
    assert complaint in failure.value.stderr


def test_liveness_is_more_tolerant_than_readiness_and_storage_is_bounded() -> None:
    [daemonset] = of_kind(render(ON), "DaemonSet")
    [container] = daemonset["spec"]["template"]["spec"]["containers"]
    assert liveness_problems(container) == []
    for kind in ("requests", "limits"):
        assert "ephemeral-storage" in container["resources"][kind], kind
