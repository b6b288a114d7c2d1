"""JewelryMonitoring resources for tests and the demo: bodies, example specs, status checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.kubetools import wait_for
from jewelry_monitoring.builders.common import owner_selector

GROUP, VERSION, PLURAL = "monitoring.jewelry.io", "v1alpha1", "jewelrymonitorings"


def cr_body(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "JewelryMonitoring",
        "metadata": {"name": name},
        "spec": spec,
    }


def full_spec() -> dict[str, Any]:
    """A CR using every exporter, SLOs, its own dashboards, a protected metrics endpoint and
    alert routing."""
    return {
        "app": {
            "podSelector": {"app": "jewelry-shop"},
            "port": "http",
            "bearerTokenSecret": {"name": "shop-metrics", "key": "token"},
        },
        "monitorLabels": {"release": "kube-prometheus-stack"},
        "commonLabels": {"team": "jewelry"},
        "exporters": {
            "postgres": {"enabled": True, "dataSource": {"name": "shop-db", "key": "dsn"}},
            "redis": {"enabled": True, "address": "redis://shop-redis:6379"},
            "nginx": {"enabled": True, "scrapeUri": "http://shop-nginx:8080/stub_status"},
            "celery": {"enabled": True, "brokerUrl": {"name": "shop-broker", "key": "url"}},
        },
        "dashboards": {"enabled": True},
        "slos": {
            "availability": {"objective": 99.9},
            "latency": {"objective": 99, "thresholdSeconds": 0.5},
        },
        "routing": {
            "receivers": [{"name": "oncall", "webhook": {"url": ALERT_WEBHOOK}}],
            "receiver": "oncall",
        },
    }


ALERT_WEBHOOK = {"name": "shop-alerts", "key": "url"}


def make_secrets(admin_api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(admin_api)
    for name, key in (
        ("shop-metrics", "token"),
        ("shop-db", "dsn"),
        ("shop-broker", "url"),
        (ALERT_WEBHOOK["name"], ALERT_WEBHOOK["key"]),
    ):
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data={key: "s3cret"}),
        )


def secret_refs(spec: Any) -> set[tuple[str, str]]:
    """Every {name, key} pair in a spec: the Secret keys it expects to exist."""
    found: set[tuple[str, str]] = set()
    if isinstance(spec, dict):
        if set(spec) == {"name", "key"}:
            found.add((spec["name"], spec["key"]))
        for value in spec.values():
            found |= secret_refs(value)
    elif isinstance(spec, list):
        for value in spec:
            found |= secret_refs(value)
    return found


def create_referenced_secrets(
    api: client.ApiClient, namespace: str, spec: Any, value_of: Callable[[str, str], str]
) -> None:
    """Create every Secret ``spec`` refers to, each key holding ``value_of(name, key)``."""
    keys: dict[str, dict[str, str]] = {}
    for name, key in secret_refs(spec):
        keys.setdefault(name, {})[key] = value_of(name, key)
    core = client.CoreV1Api(api)
    for name, data in keys.items():
        secret = client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
        try:
            core.create_namespaced_secret(namespace, secret)
        except ApiException as error:
            if error.status != 409:
                raise


CustomApi = client.CustomObjectsApi


def get_cr(admin_api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = CustomApi(admin_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return result


def condition(cr: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in cr.get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return {}


def printer_columns(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The row ``kubectl get jm`` prints, by column name (the server's Table rendering, as
    kubectl asks for it; ``-o wide`` columns included)."""
    table = api.call_api(
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}",
        "GET",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )
    columns = [column["name"] for column in table["columnDefinitions"]]
    return dict(zip(columns, table["rows"][0]["cells"], strict=True))


def wait_condition(
    admin_api: client.ApiClient,
    namespace: str,
    name: str,
    kind: str,
    status: str,
    reason: str | None = None,
    timeout: float = 30.0,
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        cr = get_cr(admin_api, namespace, name)
        found = condition(cr, kind)
        generation = cr["metadata"]["generation"]
        if (
            found.get("status") == status
            and (reason is None or found.get("reason") == reason)
            and cr.get("status", {}).get("observedGeneration") == generation
        ):
            return cr
        return None

    return wait_for(probe, timeout, what=f"{kind}={status} ({reason}) on {namespace}/{name}")


def children(api: client.ApiClient, namespace: str, owner: str) -> dict[str, dict[str, Any]]:
    """Every object labelled as a child of ``owner``, keyed "Kind/name", each with its kind."""
    selector = owner_selector(owner)
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    found: dict[str, dict[str, Any]] = {}
    typed = [
        ("Deployment", apps.list_namespaced_deployment),
        ("Service", core.list_namespaced_service),
        ("ConfigMap", core.list_namespaced_config_map),
        ("NetworkPolicy", client.NetworkingV1Api(api).list_namespaced_network_policy),
    ]
    for kind, lister in typed:
        for item in lister(namespace, label_selector=selector).items:
            found[f"{kind}/{item.metadata.name}"] = {
                **api.sanitize_for_serialization(item),
                "kind": kind,
            }
    for kind, plural, version in (
        ("ServiceMonitor", "servicemonitors", "v1"),
        ("PrometheusRule", "prometheusrules", "v1"),
        ("AlertmanagerConfig", "alertmanagerconfigs", "v1alpha1"),
    ):
        listing = CustomApi(api).list_namespaced_custom_object(
            "monitoring.coreos.com", version, namespace, plural, label_selector=selector
        )
        for item in listing["items"]:
            found[f"{kind}/{item['metadata']['name']}"] = {**item, "kind": kind}
    return found
