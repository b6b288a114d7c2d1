"""The monitoring stack in pods, as kube-prometheus-stack deploys it, from our local images.

prometheus-operator runs in the cluster as a Deployment under a ClusterRole of its own, cut
down to what its Prometheus and Alertmanager controllers use (it checks its permissions at
start and leaves out the controllers it may not run: PrometheusAgent, ThanosRuler). It makes
the StatefulSets of one Prometheus and one Alertmanager, which select our ServiceMonitors
and PrometheusRules by the ``release`` label, as kube-prometheus-stack's do. Every image is
ours (devkit.images) and never pulled; every pod meets the "restricted" Pod Security
Standard.

Used by the e2e suite (tests/e2e/test_monitoring.py) and by the demo (devkit.demo).

    stack_objects(images, release_label) -> list[dict]   # what to apply, in order
    apply_stack(api, objects)                            # create them (existing ones stay)
    deploy_stack(api, images, release_label)             # applied, every pod Ready
    delete_stack(api)                                    # all of it gone, pods stopped
    prometheus_pods / alertmanager_pods                  # label selectors of their pods
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.kubetools import wait_for
from devkit.operator_process import apply_objects
from devkit.product import delete_namespace, is_ready, pods_of
from devkit.prometheus_operator import MONITORING, kube_prometheus_stack_prometheus

NAMESPACE = "monitoring"
OPERATOR = "prometheus-operator"
PROMETHEUS_ACCOUNT = "prometheus"
ALERTMANAGER = "kube-prometheus-stack-alertmanager"
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
# The rules' evaluation interval: kube-prometheus-stack's default is 30 s. 10 s here lets an
# alert fire (and the e2e see it) within a few evaluations instead of minutes; the rules
# themselves (their expressions, windows and `for`) are the CR's, unchanged.
EVALUATION_INTERVAL = "10s"

Obj = dict[str, Any]

# What prometheus-operator v0.85's Prometheus and Alertmanager controllers need (its
# checkPrerequisites, then what they read and write), and nothing for what we do not use:
# no kubelet Endpoints sync (--kubelet-service=""), so no nodes, endpoints or
# endpointslices; no storage spec, so no storageclasses; no Probes on Ingresses.
OPERATOR_RULES: list[Obj] = [
    {
        "apiGroups": [MONITORING[0]],
        "resources": [
            "prometheuses",
            "alertmanagers",
            "servicemonitors",
            "podmonitors",
            "probes",
            "prometheusrules",
            "scrapeconfigs",
            "alertmanagerconfigs",
        ],
        "verbs": ["get", "list", "watch"],
    },
    {
        # Status reports (server-side apply), and the owner references with
        # blockOwnerDeletion on the objects it makes.
        "apiGroups": [MONITORING[0]],
        "resources": ["prometheuses/status", "alertmanagers/status"],
        "verbs": ["update", "patch"],
    },
    {
        "apiGroups": [MONITORING[0]],
        "resources": ["prometheuses/finalizers", "alertmanagers/finalizers"],
        "verbs": ["update"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["statefulsets"],
        "verbs": ["get", "list", "watch", "create", "update", "delete"],
    },
    {
        # Generated configs, rule files and TLS assets; it reads the Secrets monitors name.
        "apiGroups": [""],
        "resources": ["configmaps", "secrets"],
        "verbs": ["get", "list", "watch", "create", "update", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "delete"]},
    {
        # The governing Services prometheus-operated / alertmanager-operated.
        "apiGroups": [""],
        "resources": ["services", "services/finalizers"],
        "verbs": ["get", "create", "update", "delete"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
]

# What Prometheus reads for Kubernetes service discovery of ServiceMonitor targets and of
# Alertmanager (role endpointslice), and nothing else.
PROMETHEUS_RULES: list[Obj] = [
    {"apiGroups": [""], "resources": ["services", "pods"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["get", "list", "watch"],
    },
]

RESTRICTED_POD: Obj = {
    "runAsNonRoot": True,
    "runAsUser": 65534,
    "runAsGroup": 65534,
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER: Obj = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def _meta(name: str, namespaced: bool = True) -> Obj:
    meta: Obj = {"name": name, "labels": {"app.kubernetes.io/part-of": "monitoring-stack"}}
    if namespaced:
        meta["namespace"] = NAMESPACE
    return meta


def _account(name: str, rules: list[Obj]) -> list[Obj]:
    """A ServiceAccount in NAMESPACE with a ClusterRole of ``rules`` bound to it."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": _meta(f"monitoring-stack-{name}", namespaced=False),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": _meta(f"monitoring-stack-{name}", namespaced=False),
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"monitoring-stack-{name}",
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}],
        },
    ]


def operator_deployment(images: Mapping[str, str]) -> Obj:
    labels = {"app.kubernetes.io/name": OPERATOR}
    container = {
        "name": OPERATOR,
        "image": images["prometheus-operator"],
        "imagePullPolicy": "Never",
        "args": [
            "--kubelet-service=",
            f"--prometheus-config-reloader={images['prometheus-config-reloader']}",
            "--web.listen-address=:8080",
            "--log-level=info",
        ],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "securityContext": RESTRICTED_CONTAINER,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(OPERATOR),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": OPERATOR,
                    "securityContext": RESTRICTED_POD,
                    "containers": [container],
                },
            },
        },
    }


def prometheus(images: Mapping[str, str], release_label: Mapping[str, str]) -> Obj:
    """kube-prometheus-stack's Prometheus (devkit.prometheus_operator), run from our image,
    sending alerts to the Alertmanager below."""
    resource = kube_prometheus_stack_prometheus(
        dict(release_label), images["prometheus"].rsplit(":", 1)[1]
    )
    resource["spec"].update(
        {
            "image": images["prometheus"],
            "imagePullPolicy": "Never",
            "replicas": 1,
            "serviceAccountName": PROMETHEUS_ACCOUNT,
            "serviceDiscoveryRole": "EndpointSlice",
            "evaluationInterval": EVALUATION_INTERVAL,
            "retention": "1d",
            "securityContext": {**RESTRICTED_POD, "fsGroup": 65534},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
            "alerting": {
                "alertmanagers": [
                    {
                        "namespace": NAMESPACE,
                        "name": "alertmanager-operated",
                        "port": "web",
                        "apiVersion": "v2",
                    }
                ]
            },
        }
    )
    return resource


def alertmanager(images: Mapping[str, str], release_label: Mapping[str, str]) -> Obj:
    """kube-prometheus-stack's Alertmanager: one replica, AlertmanagerConfigs selected by the
    release label. ``version`` is our binary's, so the operator writes a configuration that
    version understands (Debian's 0.25)."""
    return {
        "apiVersion": "/".join(MONITORING),
        "kind": "Alertmanager",
        "metadata": _meta(ALERTMANAGER),
        "spec": {
            "image": images["alertmanager"],
            "imagePullPolicy": "Never",
            "version": images["alertmanager"].rsplit(":", 1)[1],
            "replicas": 1,
            "alertmanagerConfigSelector": {"matchLabels": dict(release_label)},
            "alertmanagerConfigNamespaceSelector": {},
            "securityContext": {**RESTRICTED_POD, "fsGroup": 65534},
            "resources": {"requests": {"cpu": "20m", "memory": "64Mi"}},
        },
    }


def stack_objects(images: Mapping[str, str], release_label: Mapping[str, str]) -> list[Obj]:
    """Everything, in the order to apply it: the namespace, the operator with its RBAC,
    Prometheus's RBAC, then the Alertmanager and Prometheus resources."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(NAMESPACE, namespaced=False)},
        *_account(OPERATOR, OPERATOR_RULES),
        operator_deployment(images),
        *_account(PROMETHEUS_ACCOUNT, PROMETHEUS_RULES),
        alertmanager(images, release_label),
        prometheus(images, release_label),
    ]


# Plurals of the monitoring.coreos.com kinds we create.
PLURALS = {"Prometheus": "prometheuses", "Alertmanager": "alertmanagers"}


def apply_stack(api: client.ApiClient, objects: list[Obj]) -> None:
    """Create ``objects`` in order; the ones that exist already stay as they are."""
    custom = client.CustomObjectsApi(api)
    for obj in objects:
        if obj["kind"] not in PLURALS:
            apply_objects(api, [obj])
            continue
        try:
            custom.create_namespaced_custom_object(
                *MONITORING, obj["metadata"]["namespace"], PLURALS[obj["kind"]], obj
            )
        except ApiException as error:
            if error.status != 409:
                raise


def deploy_stack(
    api: client.ApiClient,
    images: Mapping[str, str],
    release_label: Mapping[str, str],
    timeout: float = 600,
) -> None:
    """Apply the stack; return once prometheus-operator, Alertmanager and Prometheus each
    have a Ready pod."""
    apply_stack(api, stack_objects(images, release_label))
    core = client.CoreV1Api(api)
    for selector in (OPERATOR_PODS, ALERTMANAGER_PODS, PROMETHEUS_PODS):
        wait_for(
            lambda selector=selector: [
                p for p in pods_of(core, NAMESPACE, selector) if is_ready(p)
            ],
            timeout=timeout,
            interval=2,
            what=f"a Ready pod of {selector} in {NAMESPACE}",
        )


def delete_stack(api: client.ApiClient, timeout: float = 300) -> None:
    """Remove what ``stack_objects`` made: the namespace (waiting until its pods are gone)
    and the cluster-wide RBAC."""
    core = client.CoreV1Api(api)
    rbac = client.RbacAuthorizationV1Api(api)
    selector = "app.kubernetes.io/part-of=monitoring-stack"
    for binding in rbac.list_cluster_role_binding(label_selector=selector).items:
        rbac.delete_cluster_role_binding(binding.metadata.name)
    for role in rbac.list_cluster_role(label_selector=selector).items:
        rbac.delete_cluster_role(role.metadata.name)
    delete_namespace(core, NAMESPACE, timeout)


# Label selectors of the pods prometheus-operator makes (its StatefulSets' pod labels).
PROMETHEUS_PODS = "app.kubernetes.io/name=prometheus"
ALERTMANAGER_PODS = "app.kubernetes.io/name=alertmanager"
OPERATOR_PODS = f"app.kubernetes.io/name={OPERATOR}"
