"""Proof that the local control plane is a real Kubernetes API server with real controllers."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.cluster import ControlPlane
from devkit.kubetools import api_client, apply_crds, wait_for

pytestmark = pytest.mark.cluster

GROUP = "widgets.test.jewelry.io"


def widget_crd() -> dict[str, object]:
    """A CRD with a structural schema: a required enum field and a defaulted integer."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["colour"],
                                    "properties": {
                                        "colour": {"type": "string", "enum": ["gold", "silver"]},
                                        "carats": {"type": "integer", "default": 18},
                                    },
                                }
                            },
                        }
                    },
                }
            ],
        },
    }


def test_structural_schema_rejects_invalid_and_defaults_valid(
    admin_api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    crd_file = tmp_path / "widget.yaml"
    import yaml

    crd_file.write_text(yaml.safe_dump(widget_crd()))
    apply_crds(admin_api, [crd_file])
    custom = client.CustomObjectsApi(admin_api)

    def widget(spec: dict[str, object]) -> dict[str, object]:
        return {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Widget",
            "metadata": {"name": f"w-{uuid.uuid4().hex[:6]}"},
            "spec": spec,
        }

    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(
            GROUP, "v1", namespace, "widgets", widget({"colour": "bronze"})
        )
    assert rejected.value.status == 422
    assert "Unsupported value" in rejected.value.body

    created = custom.create_namespaced_custom_object(
        GROUP, "v1", namespace, "widgets", widget({"colour": "gold"})
    )
    assert created["spec"] == {"colour": "gold", "carats": 18}


def test_garbage_collection_and_replicasets(admin_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(admin_api)
    apps = client.AppsV1Api(admin_api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    labels = {"app": "gc-probe"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(
            name="owned",
            owner_references=[
                client.V1OwnerReference(
                    api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid
                )
            ],
        ),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
            ),
        ),
    )
    apps.create_namespaced_deployment(namespace, deployment)

    replica_sets = wait_for(
        lambda: apps.list_namespaced_replica_set(namespace).items,
        what="ReplicaSet from the Deployment controller",
    )
    assert replica_sets[0].metadata.owner_references[0].name == "owned"

    core.delete_namespaced_config_map("owner", namespace)

    def deployment_gone() -> bool:
        try:
            apps.read_namespaced_deployment("owned", namespace)
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(deployment_gone, timeout=30, what="garbage collection of the owned Deployment")


def test_rbac_is_enforced_for_service_accounts(
    admin_api: client.ApiClient, namespace: str, service_account_kubeconfig_factory
) -> None:
    as_reader = client.CoreV1Api(
        api_client(service_account_kubeconfig_factory(namespace, "reader"))
    )

    with pytest.raises(ApiException) as forbidden:
        as_reader.list_namespaced_pod(namespace)
    assert forbidden.value.status == 403
    assert f"system:serviceaccount:{namespace}:reader" in forbidden.value.body

    rbac = client.RbacAuthorizationV1Api(admin_api)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)
            ],
        ),
    )
    pods = wait_for(lambda: as_reader.list_namespaced_pod(namespace), what="RBAC to allow")
    assert pods.items == []
    with pytest.raises(ApiException) as still_forbidden:
        as_reader.list_namespaced_secret(namespace)
    assert still_forbidden.value.status == 403


def test_prometheus_operator_crds_validate_servicemonitors(
    admin_api: client.ApiClient, prometheus_operator_crd_names: list[str], namespace: str
) -> None:
    assert "servicemonitors.monitoring.coreos.com" in prometheus_operator_crd_names
    assert "prometheusrules.monitoring.coreos.com" in prometheus_operator_crd_names
    custom = client.CustomObjectsApi(admin_api)

    def service_monitor(endpoint: dict[str, object]) -> dict[str, object]:
        return {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {"name": f"sm-{uuid.uuid4().hex[:6]}"},
            "spec": {"selector": {"matchLabels": {"app": "x"}}, "endpoints": [endpoint]},
        }

    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(
            "monitoring.coreos.com",
            "v1",
            namespace,
            "servicemonitors",
            service_monitor({"port": "metrics", "scheme": "gopher"}),
        )
    assert rejected.value.status == 422
    assert "scheme" in rejected.value.body

    accepted = custom.create_namespaced_custom_object(
        "monitoring.coreos.com",
        "v1",
        namespace,
        "servicemonitors",
        service_monitor({"port": "metrics", "interval": "15s"}),
    )
    assert accepted["spec"]["endpoints"][0]["interval"] == "15s"


TOOLCHAIN = Path(__file__).resolve().parents[1] / "toolchain"
RELEASE_GO_MODS = {
    "newest": TOOLCHAIN / "kube" / "go.mod",
    "oldest": TOOLCHAIN / "kube-oldest" / "go.mod",
}


def test_the_api_server_is_the_kubernetes_release_asked_for(
    admin_api: client.ApiClient, kube_release: str
) -> None:
    """The cluster tests run against each release the chart claims (Chart.yaml kubeVersion:
    the oldest minor, and the newest): each plane reports the version its go.mod pins."""
    go_mod = RELEASE_GO_MODS[kube_release].read_text()
    (pinned,) = [
        line.split()[-1] for line in go_mod.splitlines() if "require k8s.io/kubernetes" in line
    ]
    served = client.VersionApi(admin_api).get_code()
    assert served.git_version == pinned
    assert f"1.{served.minor}" == ".".join(pinned.lstrip("v").split(".")[:2])


def test_two_control_planes_do_not_collide_and_stop_cleanly(tmp_path: Path) -> None:
    first = ControlPlane.create(tmp_path)
    second = ControlPlane.create(tmp_path)
    ports = {first.apiserver_port, first.etcd_port, second.apiserver_port, second.etcd_port}
    assert len(ports) == 4
    first.start()
    try:
        second.start()
        version = client.VersionApi(api_client(second.kubeconfig)).get_code()
        assert version.git_version.startswith("v1.")
        pids = list(first.pids.values()) + list(second.pids.values())
    finally:
        second.stop()
        first.stop()
    assert not first.workdir.exists() and not second.workdir.exists()
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )


def test_an_exited_process_that_is_not_our_child_counts_as_dead() -> None:
    """`jm-dev cluster down` stops processes an earlier CLI call started: until init reaps
    them they are zombies, and waiting for those would take each one's whole grace period."""
    from devkit.cluster import _alive

    never_reaps = "import os, time\nchild = os.fork()\nif child == 0:\n    os._exit(0)\n"
    never_reaps += "print(child, flush=True)\ntime.sleep(30)\n"
    parent = subprocess.Popen(
        [sys.executable, "-c", never_reaps], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        orphan = int(parent.stdout.readline())  # exited, and its parent never reaps it
        wait_for(
            lambda: "Z" in Path(f"/proc/{orphan}/stat").read_text().rsplit(")", 1)[1][:3],
            timeout=10,
            what="the zombie",
        )
        assert not _alive(orphan)
        assert _alive(parent.pid)
    finally:
        parent.kill()
        parent.wait()
