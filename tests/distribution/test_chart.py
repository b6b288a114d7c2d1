"""The Helm chart, rendered with the real ``helm`` under several value sets."""

from __future__ import annotations

import datetime
import json
import subprocess
from collections import Counter
from typing import Any

import pytest
import yaml
from kubernetes import client

from devkit.cluster import ControlPlane
from devkit.kubetools import apply_crds
from devkit.manifests import CHART, chart_crd_files
from devkit.operator_process import render_chart, render_notes
from devkit.toolchain import binary
from jewelry_monitoring import config as operator_config
from jewelry_monitoring.doctor import Doctor
from jewelry_monitoring.kube import REQUEST_TIMEOUT, Kube
from jewelry_monitoring.spec import DEFAULT_RUNBOOK_URL_BASE

RELEASE, NAMESPACE = "jm", "ops"
FULLNAME = "jm-jewelry-monitoring"
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "replicas=2": {"replicas": 2},
    "watchNamespaces=[a,b]": {"watchNamespaces": ["a", "b"]},
    "replicas=2,watchNamespaces=[a,b]": {"replicas": 2, "watchNamespaces": ["a", "b"]},
    "metrics monitor and rules": {
        "metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}
    },
}


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return render_chart(RELEASE, NAMESPACE, values)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(objects, "Deployment")
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(operator)


def env(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["name"]: item.get("value") for item in container(objects)["env"]}


def rules(objects: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    role = next(o for o in by_kind(objects, "ClusterRole") if o["metadata"]["name"] == name)
    return list(role["rules"])


def grants(rule_list: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for rule in rule_list:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            verbs.update(rule["verbs"])
    return verbs


def test_defaults_render_the_expected_objects() -> None:
    objects = render()
    assert Counter(o["kind"] for o in objects) == {
        "ServiceAccount": 1,
        "ClusterRole": 2,
        "ClusterRoleBinding": 2,
        "Deployment": 1,
        "Service": 1,  # the operator's metrics
        "ConfigMap": 5,  # the shared Grafana dashboards
        "CustomResourceDefinition": 1,  # a template, so that helm upgrade upgrades it
    }
    for obj in objects:
        assert obj["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        if obj["kind"] in ("ServiceAccount", "Deployment", "Service"):
            assert obj["metadata"]["namespace"] == NAMESPACE
    (deployment,) = by_kind(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two versions at once
    pod = deployment["spec"]["template"]
    assert (
        deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    )
    assert pod["spec"]["serviceAccountName"] == FULLNAME
    operator = container(objects)
    # Where the release workflow publishes it, at the chart's appVersion.
    assert operator["image"] == "ghcr.io/jewelry-monitoring/jewelry-monitoring-operator:0.1.0"
    assert operator["args"] == ["run"]
    assert env(objects) == {
        "POD_NAME": None,  # from the downward API
        "POD_NAMESPACE": None,
        "JM_NAMESPACES": "",
        "JM_RESYNC_SECONDS": "0",
        "JM_LOG_LEVEL": "INFO",
        "JM_LIVENESS_PORT": "8080",
        "JM_METRICS_PORT": "8081",
        "JM_ALLOWED_IMAGES": "",
        "JM_RUNBOOK_URL_BASE": DEFAULT_RUNBOOK_URL_BASE,
        "JM_DEFAULT_MONITOR_LABELS": "{}",
        "JM_DEFAULT_ALERTMANAGER_CONFIG_LABELS": "{}",
        "JM_PROMETHEUS_REF": "",
        "JM_PROMETHEUS_URL": "",
        "JM_PROMETHEUS_ALLOWED_URLS": "",
    }
    for kind in ("requests", "limits"):
        assert "ephemeral-storage" in operator["resources"][kind], kind
    probe = operator["livenessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": "health"}
    assert operator["ports"] == [
        {"name": "health", "containerPort": 8080},
        {"name": "metrics", "containerPort": 8081},
    ]
    namespaced = rules(objects, f"{FULLNAME}-namespaced")
    # get: a referenced key exists; list/watch: the metadata-only Secret watch (no data).
    assert grants(namespaced, "", "secrets") == {"get", "list", "watch"}
    # blockOwnerDeletion on the children needs it (OwnerReferencesPermissionEnforcement).
    assert grants(namespaced, "monitoring.jewelry.io", "jewelrymonitorings/finalizers") == {
        "update"
    }
    # The exporters' NetworkPolicies, created and pruned like every other child.
    assert grants(namespaced, "networking.k8s.io", "networkpolicies") == {
        "get",
        "list",
        "watch",
        "create",
        "patch",
        "delete",
    }
    assert not by_kind(objects, "Role")  # no Lease without leader election
    (service,) = by_kind(objects, "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics"}]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_chart_defaults_reach_the_operator_as_it_reads_them() -> None:
    """kube-prometheus-stack's release label and Prometheus set once in the chart: the
    operator's configuration holds them (config.load reads the rendered environment)."""
    values = {
        "defaults": {"monitorLabels": {"release": "kps"}, "alertmanagerConfigLabels": {"a": "b"}},
        "prometheus": {
            "ref": "monitoring/kps-kube-prometheus-prometheus",
            "allowedUrls": ["http://prometheus.other.svc:9090", "http://thanos.svc:9090/p"],
        },
    }
    environment = {k: v for k, v in env(render(values)).items() if v is not None}
    defaults = operator_config.load(env=environment).defaults
    assert defaults == operator_config.ResourceDefaults(
        monitor_labels={"release": "kps"},
        alertmanager_config_labels={"a": "b"},
        prometheus_ref="monitoring/kps-kube-prometheus-prometheus",
        allowed_prometheus_urls=("http://prometheus.other.svc:9090", "http://thanos.svc:9090/p"),
    )
    assert defaults.url_allowed("http://THANOS.svc:9090/p/")
    assert not defaults.url_allowed("http://169.254.169.254/latest/meta-data#")


def test_watch_namespaces_bind_per_namespace_and_nothing_cluster_wide() -> None:
    objects = render({"watchNamespaces": ["a", "b"]})
    bindings = by_kind(objects, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["a", "b"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": f"{FULLNAME}-namespaced",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": FULLNAME, "namespace": NAMESPACE}
        ]
    cluster_bindings = by_kind(objects, "ClusterRoleBinding")
    # Only the cluster-scoped reads are bound cluster-wide; the namespaced role is not.
    assert [b["roleRef"]["name"] for b in cluster_bindings] == [f"{FULLNAME}-cluster"]
    assert env(objects)["JM_NAMESPACES"] == "a,b"
    cluster_rules = rules(objects, f"{FULLNAME}-cluster")
    for group, resource in (("apps", "deployments"), ("", "secrets"), ("", "services")):
        assert not grants(cluster_rules, group, resource)


def test_replicas_two_turn_on_leader_election_and_a_disruption_budget() -> None:
    objects = render({"replicas": 2})
    lease = f"{FULLNAME}-leader"
    assert (
        env(objects).items()
        >= {
            "JM_LEADER_ELECTION": "true",
            "JM_LEASE_NAME": lease,
            "JM_LEASE_DURATION_SECONDS": "15",
            "JM_RENEW_DEADLINE_SECONDS": "10",
            "JM_RETRY_PERIOD_SECONDS": "2",
        }.items()
    )
    (deployment,) = by_kind(objects, "Deployment")
    # The Lease keeps a new version from writing while the old one leads: rolling is safe.
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate"}
    (role,) = by_kind(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [lease],
            "verbs": ["get", "update"],
        },
    ]
    (binding,) = by_kind(objects, "RoleBinding")
    assert binding["metadata"]["namespace"] == NAMESPACE
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    # The release owns the Lease (helm uninstall deletes it), unheld until a replica claims it.
    (lease_object,) = by_kind(objects, "Lease")
    assert lease_object["metadata"]["name"] == lease
    assert lease_object["metadata"]["namespace"] == NAMESPACE
    assert lease_object["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert not lease_object["spec"].get("holderIdentity")
    assert not by_kind(objects, "ClusterKopfPeering")
    (budget,) = by_kind(objects, "PodDisruptionBudget")
    assert budget["metadata"]["namespace"] == NAMESPACE
    assert budget["spec"]["minAvailable"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert deployment["spec"]["replicas"] == 2


def test_replicas_two_in_watched_namespaces_keep_the_lease_in_the_release_namespace() -> None:
    objects = render({"replicas": 2, "watchNamespaces": ["a", "b"]})
    (role,) = by_kind(objects, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    lease_bindings = [b for b in by_kind(objects, "RoleBinding") if b["roleRef"]["kind"] == "Role"]
    assert [b["metadata"]["namespace"] for b in lease_bindings] == [NAMESPACE]
    for name in (f"{FULLNAME}-cluster", f"{FULLNAME}-namespaced"):
        assert not grants(rules(objects, name), "coordination.k8s.io", "leases")


def test_single_replica_has_no_lease_nor_disruption_budget() -> None:
    objects = render({"replicas": 1, "watchNamespaces": ["a"]})
    kinds = {o["kind"] for o in objects}
    assert not kinds & {"Role", "PodDisruptionBudget", "Lease"}
    assert "JM_LEADER_ELECTION" not in env(objects)


def test_operator_service_monitor_and_rules_carry_the_monitor_labels() -> None:
    objects = render(
        {
            "metrics": {
                "port": 9100,
                "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True},
                "monitorLabels": {"release": "kube-prometheus-stack"},
            }
        }
    )
    (service,) = by_kind(objects, "Service")
    (monitor,) = by_kind(objects, "ServiceMonitor")
    (rule,) = by_kind(objects, "PrometheusRule")
    for obj in (monitor, rule):
        assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert obj["metadata"]["namespace"] == NAMESPACE
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s"}
    ]
    assert service["spec"]["ports"][0]["port"] == 9100
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert alerts == {
        "JewelryMonitoringOperatorDown",
        "JewelryMonitoringReconcileErrors",
        "JewelryMonitoringOperatorQueueStuck",
    }
    assert not by_kind(render(), "ServiceMonitor") and not by_kind(render(), "PrometheusRule")


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_runs_non_root_with_a_read_only_root_filesystem(values: dict[str, Any]) -> None:
    objects = render(values)
    (deployment,) = by_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container(objects)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # the only writable path
    assert container(objects)["resources"]["limits"]


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_never_renders_secrets(values: dict[str, Any]) -> None:
    assert not by_kind(render(values), "Secret")


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_lint_strict(values: dict[str, Any]) -> None:
    command = [str(binary("helm")), "lint", "--strict", str(CHART)]
    for key, value in values.items():
        command += ["--set-json", f"{key}={json.dumps(value)}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicas": 0}, "/replicas"),
        ({"watchNamespaces": ["Shop_NS"]}, "/watchNamespaces/0"),
        ({"watchNamespaces": "shop"}, "/watchNamespaces"),
        ({"logLevel": "TRACE"}, "/logLevel"),
        ({"resyncSeconds": 1}, "/resyncSeconds"),
        ({"livenessPort": 70000}, "/livenessPort"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"leaderElection": {"leaseDurationSeconds": 0}}, "/leaderElection/leaseDurationSeconds"),
        ({"metrics": {"port": 0}}, "/metrics/port"),
        ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "/metrics/serviceMonitor/enabled"),
        ({"replica": 2}, "replica"),  # a typo is an error, not a silent no-op
        ({"prometheus": {"ref": "kps-kube-prometheus-prometheus"}}, "/prometheus/ref"),
        ({"prometheus": {"allowedUrls": ["169.254.169.254"]}}, "/prometheus/allowedUrls/0"),
        ({"defaults": {"monitorLabels": {"release": 1}}}, "/defaults/monitorLabels/release"),
    ],
)
def test_values_schema_rejects_bad_values(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(subprocess.CalledProcessError) as failure:
        render(values)
    assert complaint in failure.value.stderr


def test_the_crd_is_the_generated_one_kept_on_uninstall() -> None:
    """The CRD template renders files/crds/ (the operator's generated schema) unchanged but for
    Helm's labels and the keep policy; crds.install=false leaves it to the user."""
    (crd,) = by_kind(render(), "CustomResourceDefinition")
    (generated,) = [yaml.safe_load(path.read_text()) for path in chart_crd_files()]
    assert crd["metadata"].pop("annotations") == {"helm.sh/resource-policy": "keep"}
    assert crd["metadata"].pop("labels")["app.kubernetes.io/managed-by"] == "Helm"
    assert crd == generated
    assert not by_kind(render({"crds": {"install": False}}), "CustomResourceDefinition")
    assert not (CHART / "crds").exists(), "Helm installs crds/ once and never upgrades it"


# A release of its own: a dry-run install refuses to adopt objects of the same names, which the
# operator tests' fixture makes from this chart when both run on one control plane.
NOTES_RELEASE, NOTES_FULLNAME = "notes", "notes-jewelry-monitoring"


@pytest.mark.cluster
def test_notes_tell_how_to_apply_a_cr_and_check_it(
    control_plane: ControlPlane, admin_api: client.ApiClient
) -> None:
    # As the operator tests' fixture does: the CRD applied without Helm (render_notes leaves
    # it out of the dry-run install).
    apply_crds(admin_api, chart_crd_files())
    notes = render_notes(control_plane, NOTES_RELEASE, NAMESPACE, {})
    assert "kubectl get jm" in notes
    assert "watching all namespaces" in notes
    assert f"deployment/{NOTES_FULLNAME}" in notes
    notes = render_notes(
        control_plane, NOTES_RELEASE, NAMESPACE, {"replicas": 2, "watchNamespaces": ["a", "b"]}
    )
    assert "watching namespaces: a, b" in notes
    assert (
        f"2 replicas with leader election: the holder of Lease {NAMESPACE}/{NOTES_FULLNAME}-leader"
        in notes
    )


def test_an_existing_service_account_must_be_named() -> None:
    """serviceAccount.create false with no name bound the operator's cluster-wide roles to the
    namespace's "default" ServiceAccount: to every pod there that names none."""
    with pytest.raises(subprocess.CalledProcessError) as failure:
        render({"serviceAccount": {"create": False}})
    assert "serviceAccount.name" in failure.value.stderr
    objects = render({"serviceAccount": {"create": False, "name": "ops-operator"}})
    assert not by_kind(objects, "ServiceAccount")
    subjects = [s for b in by_kind(objects, "ClusterRoleBinding") for s in b["subjects"]]
    assert subjects and {s["name"] for s in subjects} == {"ops-operator"}


@pytest.mark.parametrize("values", [{}, {"replicas": 2}], ids=["one replica", "replicas=2"])
def test_the_grace_period_covers_the_drain_and_the_hand_over(values: dict[str, Any]) -> None:
    """On SIGTERM a leader drains its reconciles (up to the renew deadline), waits for the
    writes it sent (up to a request's timeout), then releases the Lease (one request, within
    the renew deadline). Killed before, it leaves the Lease to expire: the standby waits a
    whole lease duration."""
    objects = render(values)
    (deployment,) = by_kind(objects, "Deployment")
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    renew_deadline = int(env(render({"replicas": 2}))["JM_RENEW_DEADLINE_SECONDS"])
    assert grace >= renew_deadline + sum(REQUEST_TIMEOUT) + renew_deadline


class _Installed(Kube):
    """The API as doctor reads it: the chart's objects, the Deployment's replicas available,
    its Lease renewed just now."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        super().__init__(client.ApiClient(client.Configuration()))
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        (self.deployment,) = by_kind(objects, "Deployment")
        self.deployment["status"] = {"availableReplicas": self.deployment["spec"]["replicas"]}
        (self.lease,) = by_kind(objects, "Lease")
        self.lease["spec"] = {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": now}

    def list(
        self, kind: str, namespace: str | None = None, label_selector: str = ""
    ) -> list[dict[str, Any]]:
        return [self.deployment] if kind == "Deployment" else []

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        found = kind == "Lease" and name == self.lease["metadata"]["name"]
        return self.lease if found else None


def test_doctor_finds_the_lease_whatever_the_length_of_the_release_name() -> None:
    """The chart shortens the Lease's name for a long release name (a name has at most 63
    characters); doctor guessed it from the Deployment's name and reported no leader."""
    release = "a-rather-long-release-name-for-the-shop-monitoring"
    objects = render_chart(release, NAMESPACE, {"replicas": 2})
    checks = {c.name: c for c in Doctor(_Installed(objects), NAMESPACE).operator()}
    assert checks["operator leader"].status == "ok", checks["operator leader"]


def _cluster_variables(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``cluster`` variable of every shared dashboard the chart renders."""
    found = []
    for config_map in by_kind(objects, "ConfigMap"):
        for text in config_map.get("data", {}).values():
            variables = json.loads(text)["templating"]["list"]
            found += [v for v in variables if v["name"] == "cluster"]
    return found


def test_the_dashboards_cluster_variable_shows_only_in_multi_cluster_mode() -> None:
    """As kube-prometheus-stack's: one cluster, hidden; several in one data source, shown."""
    single = _cluster_variables(render())
    multi = _cluster_variables(render({"dashboards": {"multiCluster": True}}))
    assert len(single) == len(multi) == len(list((CHART / "dashboards").glob("*.json")))
    assert {v["hide"] for v in single} == {2}
    assert {v["hide"] for v in multi} == {0}
    # Only the cluster variable changes: every other one stays shown in both.
    for objects in (render(), render({"dashboards": {"multiCluster": True}})):
        for config_map in by_kind(objects, "ConfigMap"):
            for text in config_map.get("data", {}).values():
                others = json.loads(text)["templating"]["list"]
                assert {v["hide"] for v in others if v["name"] != "cluster"} == {0}
