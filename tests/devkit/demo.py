"""`jm-dev demo`: the product end to end, on the embedded local control plane.

Starts etcd + kube-apiserver + kube-controller-manager, installs our CRD and
prometheus-operator's, installs the chart's RBAC, runs the operator under it, creates a
kube-prometheus-stack style Prometheus and the example JewelryMonitoring, then shows what the
operator made of it.

On a cluster the user names (`--context`, see devkit.cli) it only installs the CRDs that are
missing and the example's namespaces. It never replaces a CRD the cluster has: that one may be
newer than ours and owned by a Helm release such as kube-prometheus-stack.
"""

from __future__ import annotations

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
from devkit.kubetools import api_client, install_missing_crds, load_yaml_documents
from devkit.manifests import chart_crd_files
from devkit.operator_process import REPO, OperatorProcess, install_rbac, start_operator
from devkit.prometheus_operator import MONITORING, kube_prometheus_stack_prometheus
from devkit.stopping import shielded
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


def _install_crds(api: client.ApiClient) -> None:
    """Our CRD and prometheus-operator's, where missing; existing ones stay as they are."""
    files = [*chart_crd_files(), *prometheus_operator_crds()]
    created, kept = install_missing_crds(api, files)
    print(f"installed {len(created)} missing CRDs: {', '.join(created) or 'none'}")
    for name, provenance in kept.items():
        print(f"  kept the cluster's own CRD {name} ({provenance}): not replaced")


def _example_namespaces(api: client.ApiClient) -> tuple[dict[str, Any], str]:
    """The example JewelryMonitoring, after creating its namespace and `monitoring`."""
    example = next(d for d in _example() if d["kind"] == "JewelryMonitoring")
    namespace = example["metadata"].get("namespace", "jewelry-shop")
    for name in (namespace, "monitoring"):
        _ensure_namespace(api, name)
    return example, namespace


def prepare_named_cluster(context: str, api: client.ApiClient) -> int:
    """On a cluster the user named: only what is missing for `helm install`, then stop."""
    print(f"using context {context} at {api.configuration.host}")
    _install_crds(api)
    _example_namespaces(api)
    print("an existing cluster: run the operator there with `helm install`; stopping")
    return 0


def run_demo(keep: bool = False) -> int:
    """The whole product on a fresh embedded control plane, removed at the end."""
    plane: ControlPlane | None = None
    operator: OperatorProcess | None = None
    workdir: Path | None = None
    try:
        workdir = Path(tempfile.mkdtemp(prefix="jm-demo-"))
        print("starting the embedded local control plane")
        plane = ControlPlane.create(workdir).start()
        api = api_client(plane.kubeconfig)
        _install_crds(api)
        example, namespace = _example_namespaces(api)
        kubeconfig = install_rbac(plane, api, "jm", "jewelry-monitoring")
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
            print(f"\nleft running: export KUBECONFIG={plane.kubeconfig}")
            print(f"operator log: {workdir / 'operator.log'}; stop with Ctrl-C")
            while operator.alive():
                time.sleep(1)
        return 0
    finally:
        with shielded():
            if operator is not None:
                operator.stop()
            if plane is not None:
                plane.stop()
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)
