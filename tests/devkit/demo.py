"""`jm-dev demo`: the product end to end, on the embedded local control plane by default.

Starts etcd + kube-apiserver + kube-controller-manager (unless $KUBECONFIG points at a
cluster), installs our CRD and prometheus-operator's, installs the chart's RBAC, runs the
operator under it, creates a kube-prometheus-stack style Prometheus and the example
JewelryMonitoring, then shows what the operator made of it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.cluster import ControlPlane
from devkit.crs import (
    GROUP,
    PLURAL,
    VERSION,
    CustomApi,
    condition,
    create_referenced_secrets,
    wait_condition,
)
from devkit.kubetools import api_client, apply_crds, load_yaml_documents
from devkit.operator_process import CHART, REPO, OperatorProcess, install_rbac, start_operator
from devkit.prometheus_operator import MONITORING, kube_prometheus_stack_prometheus
from devkit.toolchain import prometheus_operator_crds

EXAMPLE = REPO / "manifests" / "example-jewelrymonitoring.yaml"
DEMO_SECRET_VALUE = "demo-only-not-a-secret"


def _example() -> list[dict[str, Any]]:
    return load_yaml_documents(EXAMPLE.read_text())


def _ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    except ApiException as error:
        if error.status != 409:
            raise


def _show(api: client.ApiClient, cr: dict[str, Any], seconds: float) -> None:
    meta = cr["metadata"]
    print(f"\nJewelryMonitoring {meta['namespace']}/{meta['name']} Ready after {seconds:.2f}s")
    for item in cr["status"]["conditions"]:
        print(
            f"  {item['type']:<22} {item['status']:<8} {item['reason']:<30} {item['message'][:90]}"
        )
    print(f"\n{len(cr['status']['children'])} children:")
    for child in cr["status"]["children"]:
        print(f"  {child['kind']:<16} {child['name']}")


def run_demo(keep: bool = False) -> int:
    configured = os.environ.get("KUBECONFIG")
    plane: ControlPlane | None = None
    operator: OperatorProcess | None = None
    workdir = Path(tempfile.mkdtemp(prefix="jm-demo-"))
    try:
        if configured:
            print(f"using the cluster of KUBECONFIG={configured}")
            api = api_client(Path(configured))
            server_plane = None
        else:
            print("no KUBECONFIG: starting the embedded local control plane")
            plane = ControlPlane.create(workdir).start()
            api = api_client(plane.kubeconfig)
            server_plane = plane
        apply_crds(api, sorted((CHART / "crds").glob("*.yaml")))
        apply_crds(api, prometheus_operator_crds())
        documents = _example()
        example = next(d for d in documents if d["kind"] == "JewelryMonitoring")
        namespace = example["metadata"].get("namespace", "jewelry-shop")
        for name in (namespace, "monitoring"):
            _ensure_namespace(api, name)
        if server_plane is None:
            print("an existing cluster: run the operator there with `helm install`; stopping")
            return 0
        kubeconfig = install_rbac(server_plane, api, "jm", "jewelry-monitoring")
        user = "system:serviceaccount:jewelry-monitoring:jm-jewelry-monitoring"
        operator = start_operator(
            kubeconfig, workdir / "operator.log", user, env={"JM_LOG_LEVEL": "INFO"}
        )
        print(f"operator running under the chart's RBAC as {user}")

        release = example["spec"].get("monitorLabels", {})
        CustomApi(api).create_namespaced_custom_object(
            *MONITORING, "monitoring", "prometheuses", kube_prometheus_stack_prometheus(release)
        )
        create_referenced_secrets(
            api, namespace, example["spec"], lambda _name, _key: DEMO_SECRET_VALUE
        )
        started = time.monotonic()
        CustomApi(api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, example)
        cr = wait_condition(
            api, namespace, example["metadata"]["name"], "Ready", "True", timeout=60
        )
        cr = wait_condition(
            api, namespace, example["metadata"]["name"], "SelectedByPrometheus", "True", timeout=30
        )
        _show(api, cr, time.monotonic() - started)
        print("\nfirst lines of the PrometheusRule:")
        rule = CustomApi(api).get_namespaced_custom_object(
            "monitoring.coreos.com",
            "v1",
            namespace,
            "prometheusrules",
            f"{example['metadata']['name']}-rules",
        )
        print("\n".join(yaml.safe_dump(rule["spec"], sort_keys=False).splitlines()[:15]))
        assert condition(cr, "Degraded")["status"] == "False"
        if keep:
            print(f"\nleft running: export KUBECONFIG={server_plane.kubeconfig}")
            print(f"operator log: {workdir / 'operator.log'}; stop with Ctrl-C")
            while operator.alive():
                time.sleep(1)
        return 0
    finally:
        if operator is not None:
            operator.stop()
        if plane is not None:
            plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)
