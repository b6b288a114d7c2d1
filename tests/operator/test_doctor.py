"""`jewelry-monitoring doctor` against the real control plane and a real local Prometheus.

Each failure mode is produced on purpose and doctor must name it, with its fix and exit 1:
a Prometheus that lacks a label of ours, an app Service without endpoints, the real shop's
/metrics refusing Prometheus' address (PROMETHEUS_METRICS_ALLOWED_IPS), no operator
Deployment, no routing. Then the label and the pods are fixed and those checks pass.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devkit.cluster import ControlPlane
from devkit.crs import GROUP, PLURAL, VERSION, CustomApi, cr_body, wait_condition
from devkit.operator_process import OperatorProcess
from devkit.scrape_targets import fake_endpoints, prometheus_for
from devkit.shopapp import gunicorn_server, shop_env

pytestmark = pytest.mark.cluster


def doctor(plane: ControlPlane, *args: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """Run the doctor command as a user would; its checks by name, and its exit code."""
    result = subprocess.run(
        [sys.executable, "-m", "jewelry_monitoring.cli", "doctor", *args, "-o", "json"],
        env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is (result.returncode == 0)
    return result.returncode, {check["name"]: check for check in report["checks"]}


def test_doctor_names_each_failure_and_its_fix(
    operator: OperatorProcess,
    admin_api: client.ApiClient,
    control_plane: ControlPlane,
    namespace: str,
    tmp_path: Path,
) -> None:
    name = f"shop-{uuid.uuid4().hex[:5]}"
    spec = {
        "app": {"podSelector": {"app": "shop"}, "interval": "1s", "scrapeTimeout": "1s"},
    }
    custom = CustomApi(admin_api)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cr_body(name, spec))
    selecting = {"matchLabels": {"release": "kps"}}
    custom.create_namespaced_custom_object(
        "monitoring.coreos.com",
        "v1",
        namespace,
        "prometheuses",
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Prometheus",
            "metadata": {"name": "k8s"},
            "spec": {"serviceMonitorSelector": selecting, "ruleSelector": selecting},
        },
    )
    wait_condition(admin_api, namespace, name, "SelectedByPrometheus", "False")
    rules = custom.get_namespaced_custom_object(
        "monitoring.coreos.com", "v1", namespace, "prometheusrules", f"{name}-rules"
    )
    # The real shop, whose allowlist leaves out the address Prometheus scrapes from.
    env = shop_env(
        f"sqlite:///{tmp_path / 'shop.sqlite3'}", PROMETHEUS_METRICS_ALLOWED_IPS="10.0.0.0/8"
    )
    with gunicorn_server(env, workers=1) as shop:
        service = f"{name}-app-metrics"
        targets = {service: [f"{shop.host}:{shop.port}"]}
        groups = {"groups": rules["spec"]["groups"]}
        with prometheus_for(admin_api, namespace, name, targets, groups) as prometheus:
            prometheus.api.wait_for(f'up{{job="{service}"}} == 0', 60)
            code, checks = doctor(
                control_plane, name, "-n", namespace, "--prometheus-url", prometheus.url
            )

            assert code == 1
            selection = checks[f"{name}: selected by Prometheus"]
            assert selection["status"] == "fail"
            assert "release=kps" in selection["detail"]
            assert selection["fix"] == (
                f"kubectl -n {namespace} patch jm {name} --type merge -p "
                """'{"spec": {"monitorLabels": {"release": "kps"}}}'"""
            )
            endpoints = checks[f"{name}: app endpoints"]
            assert endpoints["status"] == "fail" and "app=shop" in endpoints["detail"]
            assert f"kubectl -n {namespace} get pods --show-labels" in endpoints["fix"]
            target = checks[f"{name}: target {shop.url}/metrics"]
            assert target["status"] == "fail"
            assert (
                "PROMETHEUS_METRICS_ALLOWED_IPS" in target["detail"] and "403" in target["detail"]
            )
            assert "PROMETHEUS_METRICS_ALLOWED_IPS=" in target["fix"]
            assert checks[f"{name}: rule groups"]["status"] == "ok"
            routing = checks[f"{name}: selected by Alertmanager"]
            assert (routing["status"], routing["detail"]) == ("skip", "no routing configured")
            # The operator runs beside the plane here, not as a Deployment.
            assert checks["operator"]["status"] == "fail"
            assert "helm install" in checks["operator"]["fix"]
            ours = checks["CRD jewelrymonitorings.monitoring.jewelry.io"]
            assert (ours["status"], ours["detail"]) == ("ok", "v1alpha1")
            monitors = checks["CRD servicemonitors.monitoring.coreos.com"]
            assert monitors["status"] == "ok" and "prometheus-operator 0.85.0" in monitors["detail"]
            assert checks[f"{name}: Ready"]["status"] == "ok"

            # The fixes: the patch doctor printed (kubectl's merge patch, through the API:
            # kubectl is not part of the toolchain), and pods for the selector.
            argv = shlex.split(selection["fix"])
            assert argv[:-1] == [
                "kubectl",
                "-n",
                namespace,
                "patch",
                "jm",
                name,
                "--type",
                "merge",
                "-p",
            ]
            custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, json.loads(argv[-1])
            )
            with fake_endpoints(admin_api, namespace) as pods:
                pods.add_pod({"app": "shop"}, "10.244.8.10")
                wait_condition(admin_api, namespace, name, "AppTargetsFound", "True")
                wait_condition(admin_api, namespace, name, "SelectedByPrometheus", "True")
                _, checks = doctor(control_plane, name, "-n", namespace)
                assert checks[f"{name}: selected by Prometheus"]["status"] == "ok"
                assert checks[f"{name}: app endpoints"] == {
                    "name": f"{name}: app endpoints",
                    "status": "ok",
                    "detail": "1 endpoint match app.podSelector app=shop",
                    "fix": "",
                }
                # No Prometheus URL given and none in the spec: said, not failed.
                assert checks[f"{name}: targets"]["status"] == "skip"
                assert "--prometheus-url" in checks[f"{name}: targets"]["fix"]
