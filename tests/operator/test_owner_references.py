"""Children set blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement admission
plugin (on in the local API server, as on OpenShift) allows only to whoever may update the
owner's finalizers. The chart grants that verb; without it, every create is refused."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.crs import wait_condition
from devkit.kubetools import api_client
from devkit.operator_process import OperatorProcess, render_chart

pytestmark = pytest.mark.cluster

FINALIZERS = "jewelrymonitorings/finalizers"


def _bind(api: client.ApiClient, namespace: str, account: str, role: str) -> None:
    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name=f"{account}-{role}"[:63]),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role
            ),
            subjects=[
                client.RbacV1Subject(kind="ServiceAccount", name=account, namespace=namespace)
            ],
        ),
    )


def _child_of(cr: dict[str, Any], block_owner_deletion: bool) -> client.V1ConfigMap:
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            generate_name="probe-",
            owner_references=[
                client.V1OwnerReference(
                    api_version=cr["apiVersion"],
                    kind=cr["kind"],
                    name=cr["metadata"]["name"],
                    uid=cr["metadata"]["uid"],
                    controller=True,
                    block_owner_deletion=block_owner_deletion,
                )
            ],
        )
    )


def test_block_owner_deletion_needs_update_on_finalizers(
    operator: OperatorProcess,
    admin_api: client.ApiClient,
    namespace: str,
    create_cr: Callable[..., dict[str, Any]],
    service_account_kubeconfig_factory: Callable[[str, str], Path],
) -> None:
    cr = create_cr({"app": {"podSelector": {"app": "shop"}}})
    # The operator, under the chart's RBAC, creates its children with blockOwnerDeletion.
    wait_condition(admin_api, namespace, cr["metadata"]["name"], "Ready", "True")
    service = client.CoreV1Api(admin_api).read_namespaced_service(
        f"{cr['metadata']['name']}-app-metrics", namespace
    )
    assert service.metadata.owner_references[0].block_owner_deletion is True

    # The chart's namespaced rules without the finalizers verb: the plugin refuses the create.
    (chart_role,) = [
        o
        for o in render_chart("jm", "jm-system")
        if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-namespaced")
    ]
    rules = [r for r in chart_role["rules"] if FINALIZERS not in r["resources"]]
    assert len(rules) == len(chart_role["rules"]) - 1
    without = f"{namespace}-no-finalizers"
    client.RbacAuthorizationV1Api(admin_api).create_cluster_role(
        {"metadata": {"name": without}, "rules": rules}
    )
    try:
        _bind(admin_api, namespace, "without", without)
        _bind(admin_api, namespace, "with", chart_role["metadata"]["name"])
        lacking = client.CoreV1Api(
            api_client(service_account_kubeconfig_factory(namespace, "without"))
        )
        granted = client.CoreV1Api(
            api_client(service_account_kubeconfig_factory(namespace, "with"))
        )

        with pytest.raises(ApiException) as refused:
            lacking.create_namespaced_config_map(namespace, _child_of(cr, True))
        assert refused.value.status == 403
        assert "cannot set blockOwnerDeletion" in str(refused.value.body)
        lacking.create_namespaced_config_map(namespace, _child_of(cr, False))  # RBAC is fine
        granted.create_namespaced_config_map(namespace, _child_of(cr, True))
    finally:
        client.RbacAuthorizationV1Api(admin_api).delete_cluster_role(without)
