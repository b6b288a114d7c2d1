"""The chart's standard values and conventions, rendered with the real ``helm``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devkit.cluster import ControlPlane
from devkit.kubetools import load_yaml_documents
from devkit.manifests import CHART, helm_template
from devkit.operator_process import render_chart
from devkit.toolchain import binary
from jewelry_monitoring.builders.common import Owner
from jewelry_monitoring.builders.desired import desired_objects
from jewelry_monitoring.config import load
from jewelry_monitoring.doctor import OPERATOR_SELECTOR
from jewelry_monitoring.spec import JewelryMonitoringSpec

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


DIGEST = "sha256:" + "ab" * 32
STANDARD_VALUES: dict[str, Any] = {
    "imagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}],
    "priorityClassName": "monitoring-high",
    "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
        }
    ],
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/jm"}},
    "additionalLabels": {"team": "platform"},
    "image": {"digest": DIGEST},
    "global": {"imageRegistry": "mirror.example.com"},
    "nodeExporter": {"enabled": True, "priorityClassName": "system-node-critical"},
}


def test_standard_values_reach_the_operator_pod() -> None:
    objects = render(STANDARD_VALUES)
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    assert pod["priorityClassName"] == "monitoring-high"
    assert pod["topologySpreadConstraints"] == STANDARD_VALUES["topologySpreadConstraints"]
    container = operator_container(objects)
    # The registry host replaced, the digest in place of the tag.
    assert container["image"] == (
        f"mirror.example.com/jewelry-monitoring/jewelry-monitoring-operator@{DIGEST}"
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    # What the operator passes on to every exporter pod it makes.
    assert env["JM_EXPORTER_IMAGE_PULL_SECRETS"] == "regcred,mirror"
    assert env["JM_EXPORTER_PRIORITY_CLASS_NAME"] == "monitoring-high"
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    assert account["metadata"]["annotations"] == STANDARD_VALUES["serviceAccount"]["annotations"]
    for obj in objects:
        assert obj["metadata"]["labels"]["team"] == "platform", obj["kind"]
    (daemon_set,) = [o for o in objects if o["kind"] == "DaemonSet"]
    node_pod = daemon_set["spec"]["template"]["spec"]
    assert node_pod["priorityClassName"] == "system-node-critical"
    assert node_pod["imagePullSecrets"] == STANDARD_VALUES["imagePullSecrets"]
    assert (
        node_pod["containers"][0]["image"] == "mirror.example.com/prometheus/node-exporter:v1.9.1"
    )


def test_defaults_set_no_pull_secret_priority_class_or_extra_label() -> None:
    objects = render()
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert not {"imagePullSecrets", "priorityClassName", "topologySpreadConstraints"} & set(pod)
    names = {e["name"] for e in operator_container(objects)["env"]}
    assert not {"JM_EXPORTER_IMAGE_PULL_SECRETS", "JM_EXPORTER_PRIORITY_CLASS_NAME"} & names
    assert operator_container(objects)["image"].endswith("jewelry-monitoring-operator:0.1.0")


def test_exporter_pods_get_the_pull_secrets_and_priority_class_the_chart_passes() -> None:
    """From the chart's values, through the operator's environment, to the pods it makes."""
    env = {
        e["name"]: e["value"]
        for e in operator_container(render(STANDARD_VALUES))["env"]
        if "value" in e
    }
    settings = load(env=env)
    spec = JewelryMonitoringSpec.model_validate(
        {"app": {"podSelector": {"app": "shop"}}, "exporters": {"redis": {"enabled": True}}}
    )
    owner = Owner(name="shop", namespace="shop", uid="u", spec=spec)
    (deployment,) = [
        o
        for o in desired_objects(owner, frozenset(), settings.exporter_pods)
        if o["kind"] == "Deployment"
    ]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "mirror"}]
    assert pod["priorityClassName"] == "monitoring-high"
    (plain,) = [o for o in desired_objects(owner, frozenset()) if o["kind"] == "Deployment"]
    assert not {"imagePullSecrets", "priorityClassName"} & set(plain["spec"]["template"]["spec"])


def test_name_overrides_rename_every_object_and_keep_selectors_matching() -> None:
    objects = render({"fullnameOverride": "mon", "nameOverride": "jm-op", "replicas": 2})
    namespaced_names = {
        o["metadata"]["name"] for o in objects if o["kind"] != "CustomResourceDefinition"
    }
    assert all(name.startswith("mon") for name in namespaced_names), namespaced_names
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["app.kubernetes.io/name"] == "jm-op"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (service,) = [o for o in objects if o["kind"] == "Service"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert account == "mon"
    for binding in [o for o in objects if o["kind"] in ("ClusterRoleBinding", "RoleBinding")]:
        assert [s["name"] for s in binding["subjects"]] == [account]
    # doctor finds the operator by these, whatever the names.
    selector = dict(part.split("=") for part in OPERATOR_SELECTOR.split(","))
    assert selector.items() <= pod_labels.items()
    assert selector.items() <= deployment["metadata"]["labels"].items()


def test_rbac_create_false_leaves_the_permissions_to_the_installer() -> None:
    kinds = {o["kind"] for o in render({"rbac": {"create": False}, "replicas": 2})}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    assert {"ServiceAccount", "Deployment"} <= kinds


def test_node_exporter_labels_follow_the_one_style() -> None:
    objects = render(
        {
            "nodeExporter": {
                "enabled": True,
                "serviceMonitor": {"enabled": True, "additionalLabels": {"release": "kps"}},
                "prometheusRule": {"enabled": True, "additionalLabels": {"release": "kps"}},
            }
        }
    )
    for kind in ("ServiceMonitor", "PrometheusRule"):
        (obj,) = [o for o in objects if o["kind"] == kind]
        assert obj["metadata"]["labels"]["release"] == "kps"


@pytest.mark.parametrize(
    "values, complaint",
    [
        ({"commonLabels": {"a": "b"}}, "additional properties 'commonLabels' not allowed"),
        ({"image": {"digest": "latest"}}, "does not match"),
        ({"imagePullSecrets": ["regcred"]}, "got string, want object"),
        ({"additionalLabels": {"app.kubernetes.io/name": "x"}}, "invalid propertyName"),
        ({"rbac": {"create": "no"}}, "got string, want boolean"),
    ],
)
def test_the_schema_stays_strict(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failed:
        render(values)
    assert complaint in failed.value.stderr


def test_operator_network_policy_selects_the_operator_and_opens_only_its_ports() -> None:
    assert not [o for o in render() if o["kind"] == "NetworkPolicy"]  # optional, off
    objects = render({"networkPolicy": {"enabled": True}})
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    spec = policy["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    ports = {p["name"]: p["containerPort"] for p in operator_container(objects)["ports"]}
    opened = {p["port"] for rule in spec["ingress"] for p in rule["ports"]}
    assert opened == {ports["metrics"], ports["health"]}
    egress = {p["port"] for rule in spec["egress"] for p in rule["ports"]}
    assert egress == {53, 443, 6443, 9090}  # DNS, the API server, Prometheus' API
    (api_server,) = [r for r in spec["egress"] if {"port": 6443, "protocol": "TCP"} in r["ports"]]
    assert "to" not in api_server  # no cidrs given: any address, on those ports only
    narrowed = render({"networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["10.0.0.1/32"]}}})
    (policy,) = [o for o in narrowed if o["kind"] == "NetworkPolicy"]
    assert {"ipBlock": {"cidr": "10.0.0.1/32"}} in [
        peer for rule in policy["spec"]["egress"] for peer in rule.get("to", [])
    ]


def test_helm_test_hook_asks_the_operator_and_the_api_server() -> None:
    """`helm test`: a pod of the release (let through the operator's NetworkPolicy) that
    is not one of the operator's (its Service and PodDisruptionBudget do not select it)."""
    objects = render({"networkPolicy": {"enabled": True}, "replicas": 2})
    assert not [o for o in objects if o["kind"] == "Pod"]  # helm install makes no test pod
    (test_pod,) = load_yaml_documents(
        helm_template("jm", NAMESPACE, ("--show-only", "templates/tests/installation.yaml"), True)
    )
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    labels = test_pod["metadata"]["labels"]
    (service,) = [o for o in objects if o["kind"] == "Service"]
    (budget,) = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    for selector in (service["spec"]["selector"], budget["spec"]["selector"]["matchLabels"]):
        assert not selector.items() <= labels.items()
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert any(
        "namespaceSelector" not in peer
        and peer["podSelector"]["matchLabels"].items() <= labels.items()
        for peer in peers
    )
    script = test_pod["spec"]["containers"][0]["args"][0]
    metrics = service["metadata"]["name"], service["spec"]["ports"][0]["port"]
    assert f"http://{metrics[0]}:{metrics[1]}/readyz" in script
    assert "/apis/monitoring.jewelry.io/v1alpha1" in script
    assert test_pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"]


@pytest.mark.cluster
@pytest.mark.parametrize("extra", [{}, {"rbac": {"create": False}}], ids=["rbac", "no-rbac"])
def test_a_real_api_server_takes_the_release_with_every_standard_value(
    control_plane: ControlPlane,
    admin_api: client.ApiClient,
    prometheus_operator_crd_names: list[str],
    jewelry_crd: list[str],
    namespace: str,
    tmp_path: Path,
    extra: dict[str, Any],
) -> None:
    """helm install (the CRD left out: the session's plane has it already) with every
    standard value, the NetworkPolicy, the node exporter and the operator's monitoring."""
    values = {
        **STANDARD_VALUES,
        **extra,
        "networkPolicy": {"enabled": True, "apiServer": {"cidrs": ["127.0.0.1/32"]}},
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "crds": {"install": False},
        "replicas": 2,
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    release = f"jm-{namespace}"
    helm = [str(binary("helm")), "--kubeconfig", str(control_plane.kubeconfig), "-n", namespace]
    installed = subprocess.run(
        [*helm, "install", release, str(CHART), "-f", str(values_file)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert installed.returncode == 0, installed.stderr
    try:
        stored = client.AppsV1Api(admin_api).read_namespaced_deployment(
            f"{release}-jewelry-monitoring", namespace
        )
        pod = stored.spec.template.spec
        assert [s.name for s in pod.image_pull_secrets] == ["regcred", "mirror"]
        assert pod.priority_class_name == "monitoring-high"
        assert pod.topology_spread_constraints[0].topology_key == "kubernetes.io/hostname"
        policies = client.NetworkingV1Api(admin_api).list_namespaced_network_policy(namespace)
        assert [p.metadata.name for p in policies.items] == [f"{release}-jewelry-monitoring"]
        roles = client.RbacAuthorizationV1Api(admin_api).list_cluster_role(
            label_selector=f"app.kubernetes.io/instance={release}"
        )
        assert len(roles.items) == (0 if extra else 2)
    finally:
        uninstalled = subprocess.run(
            [*helm, "uninstall", release, "--wait"], capture_output=True, text=True, timeout=180
        )
        assert uninstalled.returncode == 0, uninstalled.stderr
