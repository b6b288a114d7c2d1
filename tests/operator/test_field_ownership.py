"""How the operator creates children without reading them first, against the real API server
(issue 19 item 2), and how it knows, from the child watches alone, that a child is as it
applied it (item 4: a restart that costs nothing).

- ``Kube.apply_new`` creates by server-side apply with a resourceVersion precondition no
  object meets: the managed fields are exactly a plain apply's, a later apply that drops a
  field removes it, and an object that exists (someone else's) is refused with 409 and left
  untouched. (A POST that carries our Apply entry in metadata.managedFields does not do it:
  the server gives every field of a create to the request's own Update entry.)
- ``fieldsets.applied_fields`` computes our Apply entry's field set from the object: equal
  to the server's for every child kind, so its digest tells that nobody changed a field.
- The operator creates a new resource's children without a GET of any of them.
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
from kubernetes import client

from devkit.crs import (
    GROUP,
    PLURAL,
    VERSION,
    CustomApi,
    cr_body,
    full_spec,
    make_secrets,
    wait_condition,
)
from devkit.kubetools import operator_kube
from devkit.operator_process import OperatorProcess, audit_position, audit_requests
from jewelry_monitoring.builders.desired import CHILD_KINDS
from jewelry_monitoring.cli import render
from jewelry_monitoring.fieldsets import FIELD_MANAGER, applied_fields, digest
from jewelry_monitoring.kube import RESOURCES, Kube, KubeError

pytestmark = pytest.mark.cluster
# A spec that sets what the full one leaves out: app auth and relabelings, exporters'
# scheduling and resources.
VARIANT = {
    "app": {
        "podSelector": {"app": "shop", "tier": "web"},
        "port": 8443,
        "scheme": "https",
        "bearerTokenSecret": {"name": "metrics-token", "key": "token"},
        "tls": {"insecureSkipVerify": True},
        "relabelings": [{"action": "replace", "targetLabel": "team", "replacement": "shop"}],
        "metricRelabelings": [{"action": "drop", "sourceLabels": ["__name__"], "regex": "x_.*"}],
    },
    "commonLabels": {"team": "shop"},
    "commonAnnotations": {"owner": "ops"},
    "exporters": {
        "redis": {
            "enabled": True,
            "address": "redis:6379",
            "nodeSelector": {"pool": "infra"},
            "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
            "resources": {"requests": {"cpu": "0.05", "memory": "32Mi"}},
            "extraArgs": ["--include-system-metrics"],
        }
    },
}


def _ours(obj: dict[str, Any]) -> dict[str, Any]:
    entries = [e for e in obj["metadata"]["managedFields"] if e["manager"] == FIELD_MANAGER]
    assert len(entries) == 1, obj["metadata"]["managedFields"]
    return {k: v for k, v in entries[0].items() if k != "time"}


@pytest.fixture
def kube(admin_api: client.ApiClient, prometheus_operator_crd_names: list[str]) -> Kube:
    return operator_kube(admin_api)


@pytest.mark.parametrize("spec", [full_spec(), VARIANT], ids=["full", "variant"])
def test_created_by_guarded_apply_exactly_as_by_apply_and_field_sets_computed(
    kube: Kube, namespace: str, other_namespace: str, spec: dict[str, Any]
) -> None:
    first, second = namespace, other_namespace
    body = {**cr_body("shop", spec), "metadata": {"name": "shop", "namespace": first}}
    uid = str(uuid.uuid4())
    for wanted in render(body, uid, with_prometheus_operator=True):
        applied = kube.apply(wanted)
        elsewhere = copy.deepcopy(wanted)
        elsewhere["metadata"]["namespace"] = second
        created = kube.apply_new(elsewhere)
        what = f"{wanted['kind']} {wanted['metadata']['name']}"
        assert _ours(created) == _ours(applied), what
        assert _ours(applied)["operation"] == "Apply", what
        assert applied_fields(wanted) == _ours(applied)["fieldsV1"], what
        assert digest(applied_fields(elsewhere)) == digest(_ours(created)["fieldsV1"])


def _config_map(namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "child", "namespace": namespace, "labels": {"ours": "yes"}},
        "data": data,
    }


def test_a_later_apply_removes_a_field_the_created_object_had(kube: Kube, namespace: str) -> None:
    kube.apply_new(_config_map(namespace, {"keep": "1", "drop": "2"}))
    kube.apply(_config_map(namespace, {"keep": "1"}))
    current = kube.get("ConfigMap", namespace, "child")
    assert current is not None and current["data"] == {"keep": "1"}


def test_an_existing_object_is_never_taken_over(
    kube: Kube, admin_api: client.ApiClient, namespace: str
) -> None:
    theirs = client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="child", labels={"owner": "someone-else"}),
        data={"theirs": "1"},
    )
    client.CoreV1Api(admin_api).create_namespaced_config_map(namespace, theirs)
    before = kube.get("ConfigMap", namespace, "child")
    with pytest.raises(KubeError) as refused:
        kube.apply_new(_config_map(namespace, {"ours": "1"}))
    assert refused.value.status == 409
    after = kube.get("ConfigMap", namespace, "child")
    assert before is not None and after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["data"] == {"theirs": "1"} and after["metadata"]["labels"] == {
        "owner": "someone-else"
    }


def test_a_post_carrying_our_apply_entry_gives_the_fields_to_an_update_entry(
    kube: Kube, namespace: str
) -> None:
    """Why children are not created with POST + managedFields: recorded here so that a
    server that ever honours it is noticed."""
    model = kube.apply(_config_map(namespace, {"a": "1"}))
    entry = _ours(model)
    posted = _config_map(namespace, {"a": "1"})
    posted["metadata"]["name"] = "posted"
    posted["metadata"]["managedFields"] = [entry]
    created = kube.create(posted)
    managers = [(e["manager"], e["operation"]) for e in created["metadata"]["managedFields"]]
    assert managers == [(FIELD_MANAGER, "Update")], json.dumps(managers)


def test_a_new_resource_costs_no_read_of_its_children(
    admin_api: client.ApiClient, namespace: str, operator: OperatorProcess, control_plane: Any
) -> None:
    make_secrets(admin_api, namespace)
    start = audit_position(control_plane.audit_log)
    CustomApi(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("fresh", full_spec())
    )
    wait_condition(admin_api, namespace, "fresh", "Ready", "True")
    requests = audit_requests(control_plane.audit_log, operator.user, start)
    child_resources = {RESOURCES[kind].plural for kind in CHILD_KINDS}
    child_reads = [
        r["requestURI"]
        for r in requests
        if r["verb"] == "get" and r.get("objectRef", {}).get("resource") in child_resources
    ]
    assert child_reads == []
    creates = [r for r in requests if r["verb"] == "patch" and "fresh" in r["requestURI"]]
    assert creates, "the children were not applied: the test would prove nothing"
