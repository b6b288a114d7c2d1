"""The operator against the real control plane, running under the chart's RBAC."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.crs import (
    ALERT_WEBHOOK,
    GROUP,
    PLURAL,
    VERSION,
    CustomApi,
    children,
    condition,
    cr_body,
    full_spec,
    get_cr,
    make_secrets,
    printer_columns,
    wait_condition,
)
from devkit.kubetools import operator_kube, wait_for
from devkit.operator_process import WRITE_VERBS, OperatorProcess, audit_position, audit_writes
from devkit.scrape_targets import request_recorder
from jewelry_monitoring.doctor import FAIL, Doctor

pytestmark = pytest.mark.cluster

MONITORING = ("monitoring.coreos.com", "v1")


def service_monitor(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = CustomApi(api).get_namespaced_custom_object(
        *MONITORING, namespace, "servicemonitors", name
    )
    return result


def patch_spec(api: client.ApiClient, namespace: str, name: str, patch: dict[str, Any]) -> None:
    CustomApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"spec": patch}
    )


def quiet_writes(
    operator: OperatorProcess, audit_log: Any, settle: float = 3.0, namespace: str | None = None
) -> list[str]:
    """Wait until the operator's writes (in ``namespace``, if given) stop, then return what it
    writes in ``settle`` s."""
    for _ in range(20):
        start = audit_position(audit_log)
        time.sleep(settle)
        if not writes_in(audit_log, operator, start, namespace):
            return []
    return writes_in(audit_log, operator, start, namespace)


def writes_in(
    audit_log: Any, operator: OperatorProcess, start: int, namespace: str | None = None
) -> list[str]:
    """The operator's writes since audit line ``start``, in ``namespace`` if given (other
    tests' namespaces may still be terminating)."""
    if namespace is None:
        return audit_writes(audit_log, operator.user, start)
    lines = audit_log.read_text().splitlines()[start:]
    return [
        f"{entry['verb']} {entry['objectRef'].get('resource')}/{entry['objectRef'].get('name')}"
        for entry in map(json.loads, lines)
        if entry.get("user", {}).get("username") == operator.user
        and entry.get("stage") == "ResponseComplete"
        and entry.get("verb") in WRITE_VERBS
        and entry.get("objectRef", {}).get("namespace") == namespace
    ]


@pytest.fixture
def shop(admin_api: client.ApiClient, namespace: str, operator: OperatorProcess) -> dict[str, Any]:
    """A Ready JewelryMonitoring with everything enabled."""
    make_secrets(admin_api, namespace)
    CustomApi(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("shop", full_spec())
    )
    return wait_condition(admin_api, namespace, "shop", "Ready", "True")


def test_cr_creates_every_child_accepted_by_real_schemas(
    shop: dict[str, Any], admin_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    found = children(admin_api, namespace, "shop")
    expected = {
        "Service/shop-app-metrics",
        "ServiceMonitor/shop-app-metrics",
        "PrometheusRule/shop-rules",
        "AlertmanagerConfig/shop-alert-routing",
        *(
            f"{kind}/shop-{name}-exporter"
            for name in ("postgres", "redis", "nginx", "celery")
            for kind in ("Deployment", "Service", "ServiceMonitor", "NetworkPolicy")
        ),
    }
    assert expected <= set(found)
    # Django, Database, Cache, System, SLOs.
    assert sum(1 for key in found if key.startswith("ConfigMap/shop-dashboard-")) == 5
    uid = shop["metadata"]["uid"]
    for key, obj in found.items():
        meta = obj["metadata"]
        assert [ref["uid"] for ref in meta["ownerReferences"]] == [uid], key
        labels = meta["labels"]
        assert labels["app.kubernetes.io/part-of"] == "jewelry-monitoring", key
        assert labels["app.kubernetes.io/managed-by"] == "jewelry-monitoring-operator", key
        assert labels["app.kubernetes.io/instance"] == "shop", key
        assert labels["team"] == "jewelry", key
    for key in found:
        if key.startswith(("ServiceMonitor/", "PrometheusRule/")):
            assert found[key]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # Secrets are referenced, never copied, never logged.
    logs = operator.logs()
    assert "s3cret" not in logs and base64.b64encode(b"s3cret").decode() not in logs
    postgres = found["Deployment/shop-postgres-exporter"]
    env = postgres["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {
            "name": "DATA_SOURCE_NAME",
            "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "dsn"}},
        }
    ]
    # The server stored each NetworkPolicy as built: the Redis exporter may reach the pods of
    # this namespace on the address's port, and DNS; Prometheus may reach its metrics port.
    redis_policy = found["NetworkPolicy/shop-redis-exporter"]["spec"]
    assert redis_policy["egress"][1] == {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}],
        "ports": [{"protocol": "TCP", "port": 6379}],
    }
    assert redis_policy["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9121}]
    app_monitor = found["ServiceMonitor/shop-app-metrics"]["spec"]["endpoints"][0]
    assert app_monitor["authorization"]["credentials"] == {"name": "shop-metrics", "key": "token"}
    status = shop["status"]
    assert status["exporters"] == "postgres,redis,nginx,celery"
    assert {f"{c['kind']}/{c['name']}" for c in status["children"]} == set(found)
    assert condition(shop, "Degraded")["status"] == "False"


def test_update_changes_children_and_disable_prunes(
    shop: dict[str, Any], admin_api: client.ApiClient, namespace: str
) -> None:
    # A second resource in the same namespace with the same exporters: pruning the first
    # must never touch the second's children.
    CustomApi(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("neighbour", full_spec())
    )
    wait_condition(admin_api, namespace, "neighbour", "Ready", "True")
    before = children(admin_api, namespace, "neighbour")
    patch_spec(
        admin_api,
        namespace,
        "shop",
        {
            "app": {"interval": "30s"},
            "alerts": {"overrides": {"HighErrorRate": {"threshold": 0.2}}},
            "exporters": {"redis": {"enabled": False}},
            "dashboards": {"enabled": False},
            "routing": None,
        },
    )
    wait_condition(admin_api, namespace, "shop", "Ready", "True")
    monitor = service_monitor(admin_api, namespace, "shop-app-metrics")
    assert monitor["spec"]["endpoints"][0]["interval"] == "30s"
    rule = CustomApi(admin_api).get_namespaced_custom_object(
        *MONITORING, namespace, "prometheusrules", "shop-rules"
    )
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert "0.2" in alerts["HighErrorRate"]["expr"]
    assert not any(name.startswith("Redis") for name in alerts)
    found = children(admin_api, namespace, "shop")
    assert not [key for key in found if "redis-exporter" in key]
    assert not [key for key in found if key.startswith(("ConfigMap/", "AlertmanagerConfig/"))]
    assert "Deployment/shop-postgres-exporter" in found
    after = children(admin_api, namespace, "neighbour")
    assert {k: v["metadata"]["uid"] for k, v in after.items()} == {
        k: v["metadata"]["uid"] for k, v in before.items()
    }
    assert "Deployment/neighbour-redis-exporter" in after


def test_deleted_child_is_restored_and_edit_is_reverted(
    shop: dict[str, Any], admin_api: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(admin_api)
    old_uid = apps.read_namespaced_deployment("shop-nginx-exporter", namespace).metadata.uid
    started = time.monotonic()
    apps.delete_namespaced_deployment("shop-nginx-exporter", namespace)
    restored = wait_for(
        lambda: _uid_changed(apps, namespace, "shop-nginx-exporter", old_uid),
        timeout=5,
        what="the deleted exporter Deployment to be recreated",
    )
    assert restored
    recreate_seconds = time.monotonic() - started

    CustomApi(admin_api).patch_namespaced_custom_object(
        *MONITORING,
        namespace,
        "servicemonitors",
        "shop-app-metrics",
        {"spec": {"endpoints": [{"port": "metrics", "interval": "5m"}]}},
    )
    wait_for(
        lambda: (
            service_monitor(admin_api, namespace, "shop-app-metrics")["spec"]["endpoints"][0].get(
                "interval"
            )
            == "15s"
        ),
        timeout=5,
        what="the hand-edited ServiceMonitor to be reverted",
    )
    print(f"deleted child recreated in {recreate_seconds:.2f}s")


def _uid_changed(apps: client.AppsV1Api, namespace: str, name: str, old_uid: str) -> bool:
    try:
        return bool(apps.read_namespaced_deployment(name, namespace).metadata.uid != old_uid)
    except ApiException as error:
        if error.status == 404:
            return False
        raise


def test_deleting_the_cr_garbage_collects_children(
    shop: dict[str, Any], admin_api: client.ApiClient, namespace: str
) -> None:
    assert children(admin_api, namespace, "shop")
    CustomApi(admin_api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "shop")
    wait_for(
        lambda: not children(admin_api, namespace, "shop"),
        timeout=30,
        what="garbage collection of every child",
    )


def test_idle_and_repeated_reconcile_make_no_writes(
    shop: dict[str, Any],
    admin_api: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    control_plane: Any,
) -> None:
    audit = control_plane.audit_log
    assert quiet_writes(operator, audit) == []
    # Touch the CR without changing its spec: the operator is notified and reconciles.
    start = audit_position(audit)
    reconciled = operator.reconciles()
    CustomApi(admin_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "shop", {"metadata": {"labels": {"touched": "1"}}}
    )
    time.sleep(4)
    assert audit_writes(audit, operator.user, start) == []
    # It reads the resource and its children from its watches: no request shows that it
    # looked, its reconciles count does.
    assert operator.reconciles() > reconciled, "the operator did not even look"


def test_invalid_spec_is_reported_and_creates_nothing(
    admin_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    custom = CustomApi(admin_api)
    with pytest.raises(ApiException) as rejected:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            cr_body("bad-schema", {"app": {"podSelector": {"app": "x"}, "scheme": "gopher"}}),
        )
    assert rejected.value.status == 422

    spec = {
        "app": {"podSelector": {"app": "x"}, "interval": "10s", "scrapeTimeout": "20s"},
        "exporters": {"postgres": {"enabled": True, "dataSource": {"name": "nope", "key": "dsn"}}},
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, cr_body("bad", spec))
    cr = wait_condition(admin_api, namespace, "bad", "Ready", "False", "InvalidSpec")
    message = condition(cr, "Ready")["message"]
    assert "scrapeTimeout 20s is longer than app.interval 10s" in message
    assert "Secret nope does not exist" in message
    assert children(admin_api, namespace, "bad") == {}
    events = (
        client.CoreV1Api(admin_api)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=bad")
        .items
    )
    assert [(e.type, e.reason) for e in events] == [("Warning", "InvalidSpec")]

    # Fixing the spec makes it work, with nothing left over from the invalid generation.
    make_secrets(admin_api, namespace)
    patch_spec(
        admin_api,
        namespace,
        "bad",
        {
            "app": {"scrapeTimeout": "5s"},
            "exporters": {"postgres": {"dataSource": {"name": "shop-db"}}},
        },
    )
    wait_condition(admin_api, namespace, "bad", "Ready", "True")
    assert "Deployment/bad-postgres-exporter" in children(admin_api, namespace, "bad")


def test_objects_we_do_not_own_are_left_alone(
    admin_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    core = client.CoreV1Api(admin_api)
    theirs = client.V1Service(
        metadata=client.V1ObjectMeta(name="mine-app-metrics", labels={"owner": "someone-else"}),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
    )
    core.create_namespaced_service(namespace, theirs)
    CustomApi(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("mine", {"app": {"podSelector": {"app": "x"}}})
    )
    cr = wait_condition(admin_api, namespace, "mine", "Ready", "False", "OwnershipConflict")
    assert "Service mine-app-metrics exists and is not ours" in condition(cr, "Ready")["message"]
    untouched = core.read_namespaced_service("mine-app-metrics", namespace)
    assert untouched.metadata.labels == {"owner": "someone-else"}
    assert untouched.spec.ports[0].port == 80
    # Everything else was still created.
    assert "PrometheusRule/mine-rules" in children(admin_api, namespace, "mine")


def test_selected_by_prometheus_explains_missing_label(
    admin_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    custom = CustomApi(admin_api)
    prometheus = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": f"kps-{uuid.uuid4().hex[:4]}"},
        "spec": {
            "serviceMonitorSelector": {"matchLabels": {"release": "kps"}},
            "serviceMonitorNamespaceSelector": {},
            "ruleSelector": {"matchLabels": {"release": "kps"}},
            "ruleNamespaceSelector": {},
        },
    }
    custom.create_namespaced_custom_object(*MONITORING, namespace, "prometheuses", prometheus)
    try:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            cr_body("sel", {"app": {"podSelector": {"app": "x"}}}),
        )
        cr = wait_condition(
            admin_api, namespace, "sel", "SelectedByPrometheus", "False", "NotSelected"
        )
        message = condition(cr, "SelectedByPrometheus")["message"]
        assert prometheus["metadata"]["name"] in message
        assert "add release=kps to spec.monitorLabels" in message
        # Applied objects that no Prometheus loads monitor nothing: not Ready, and why.
        ready = condition(cr, "Ready")
        assert (ready["status"], ready["reason"]) == ("False", "NotSelectedByPrometheus")
        assert "add release=kps to spec.monitorLabels" in ready["message"]
        assert condition(cr, "Degraded")["status"] == "True"
        row = printer_columns(admin_api, namespace, "sel")
        assert (row["Ready"], row["Reason"], row["Selected"]) == (
            "False",
            "NotSelectedByPrometheus",
            "False",
        )

        patch_spec(admin_api, namespace, "sel", {"monitorLabels": {"release": "kps"}})
        cr = wait_condition(admin_api, namespace, "sel", "SelectedByPrometheus", "True", "Selected")
        assert prometheus["metadata"]["name"] in condition(cr, "SelectedByPrometheus")["message"]
        # Selected; the session's operator has no Prometheus to ask: Ready as applied, and
        # saying that scraping is not verified and what to set for it to be.
        cr = wait_condition(admin_api, namespace, "sel", "Ready", "True", "ScrapingUnverified")
        assert "the chart's prometheus.ref" in condition(cr, "Ready")["message"]
    finally:
        custom.delete_namespaced_custom_object(
            *MONITORING, namespace, "prometheuses", prometheus["metadata"]["name"]
        )


def test_a_url_the_chart_does_not_allow_is_never_fetched(
    admin_api: client.ApiClient, namespace: str, operator: OperatorProcess, control_plane: Any
) -> None:
    """Issue 17 item 14: a resource cannot make the operator (nor doctor) fetch a URL of its
    choice, a cloud metadata address for one, and read the answer in its status. Here the
    URL points at a local recorder; the session's operator allows no URL."""
    with request_recorder() as recorder:
        spec = {
            "app": {"podSelector": {"app": "x"}},
            "prometheus": {"url": recorder.url, "checkInterval": "10s"},
        }
        CustomApi(admin_api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, cr_body("ssrf", spec)
        )
        # Applied, and the Prometheus it names cannot be asked: not Ready, Unknown.
        wait_condition(admin_api, namespace, "ssrf", "Ready", "Unknown", "PrometheusNotAllowed")
        time.sleep(12)  # longer than the check interval: nothing polls it either
        checks = Doctor(operator_kube(admin_api), namespace).run("ssrf")
        assert recorder.requests == []
        cr = wait_condition(
            admin_api, namespace, "ssrf", "TargetsHealthy", "Unknown", "PrometheusNotAllowed"
        )
        message = condition(cr, "TargetsHealthy")["message"]
        assert f"spec.prometheus.url {recorder.url} is not a Prometheus URL the chart" in message
        [targets] = [c for c in checks if c.name == "ssrf: targets"]
        assert targets.status == FAIL and "prometheus.allowedUrls" in targets.detail


def _events(api: client.ApiClient, namespace: str, name: str) -> list[tuple[str, str, str]]:
    items = (
        client.CoreV1Api(api)
        .list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        .items
    )
    return [(e.type, e.reason, e.message) for e in items]


def _touch(api: client.ApiClient, namespace: str, name: str, value: str) -> None:
    CustomApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, {"metadata": {"labels": {"touched": value}}}
    )


def test_non_canonical_quantities_are_not_rewritten_on_every_reconcile(
    admin_api: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    control_plane: Any,
) -> None:
    """The API server stores cpu "0.5" as "500m" and memory "1024Mi" as "1Gi", and drops a
    toleration's empty effect: none of that may look like drift."""
    make_secrets(admin_api, namespace)
    spec = {
        "app": {"podSelector": {"app": "jewelry-shop"}},
        "exporters": {
            "postgres": {
                "enabled": True,
                "dataSource": {"name": "shop-db", "key": "dsn"},
                "resources": {
                    "requests": {"cpu": "0.5", "memory": "1024Mi"},
                    "limits": {"cpu": "1000m", "memory": "2048Mi"},
                },
                "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": ""}],
            }
        },
    }
    CustomApi(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("qty", spec)
    )
    wait_condition(admin_api, namespace, "qty", "Ready", "True")
    stored = client.AppsV1Api(admin_api).read_namespaced_deployment(
        "qty-postgres-exporter", namespace
    )
    assert stored.spec.template.spec.containers[0].resources.requests == {
        "cpu": "500m",
        "memory": "1Gi",
        "ephemeral-storage": "16Mi",
    }
    audit = control_plane.audit_log
    assert quiet_writes(operator, audit, namespace=namespace) == []
    start = audit_position(audit)
    reconciled = operator.reconciles()
    for touch in ("1", "2", "3"):
        _touch(admin_api, namespace, "qty", touch)
        time.sleep(2)
    time.sleep(2)
    assert writes_in(audit, operator, start, namespace) == []
    assert operator.reconciles() >= reconciled + 3, "it did not reconcile"
    assert [e for e in _events(admin_api, namespace, "qty") if e[1] == "Updated"] == []


def test_users_part_of_label_is_kept_and_operator_labels_are_refused(
    admin_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    custom = CustomApi(admin_api)
    labelled = {
        "app": {"podSelector": {"app": "jewelry-shop"}},
        "commonLabels": {"app.kubernetes.io/part-of": "jewelry-shop", "team": "gems"},
    }
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("labelled", labelled)
    )
    wait_condition(admin_api, namespace, "labelled", "Ready", "True")
    found = children(admin_api, namespace, "labelled")
    assert found
    for key, obj in found.items():
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "jewelry-shop", key

    reserved = {
        "app": {"podSelector": {"app": "jewelry-shop"}},
        "commonLabels": {"app.kubernetes.io/instance": "mine"},
    }
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("reserved", reserved)
    )
    cr = wait_condition(admin_api, namespace, "reserved", "Ready", "False", "InvalidSpec")
    assert "commonLabels sets app.kubernetes.io/instance" in condition(cr, "Ready")["message"]
    assert children(admin_api, namespace, "reserved") == {}


def test_names_up_to_253_characters_and_alike_names_get_distinct_valid_children(
    admin_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    """Two resources named alike for 252 characters, and one with a dot and a leading digit:
    each gets its own children under valid, shortened names; a deleted child of a long-named
    resource is restored (its events reach the resource through its ownerReference)."""
    long_names = ["jewelry-shop." + "x" * 239 + suffix for suffix in ("a", "b")]
    names = [*long_names, "1shop.eu"]
    spec = {
        "app": {"podSelector": {"app": "x"}},
        "exporters": {"redis": {"enabled": True}},
        "dashboards": {"enabled": True},
    }
    for name in names:
        assert len(name) <= 253
        CustomApi(admin_api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, cr_body(name, spec)
        )
    found = {name: children(admin_api, namespace, name) for name in names}
    for name in names:
        cr = wait_condition(admin_api, namespace, name, "Ready", "True")
        found[name] = children(admin_api, namespace, name)
        assert {f"{c['kind']}/{c['name']}" for c in cr["status"]["children"]} == set(found[name])
        for key, obj in found[name].items():
            assert len(obj["metadata"]["name"]) <= 63, key
            assert [ref["uid"] for ref in obj["metadata"]["ownerReferences"]] == [
                cr["metadata"]["uid"]
            ]
    first, second, dotted = (set(found[name]) for name in names)
    assert len(first) == len(second) == len(dotted) >= 9
    assert not first & second and not first & dotted and not second & dotted
    # The Event goes after the status (Ready), so it may still be on its way.
    wait_for(
        lambda: (
            ("Normal", "Created") in [e[:2] for e in _events(admin_api, namespace, long_names[0])]
        ),
        30,
        what="events on a 253-character name",
    )

    apps = client.AppsV1Api(admin_api)
    (deployment,) = [k.split("/", 1)[1] for k in first if k.startswith("Deployment/")]
    old_uid = apps.read_namespaced_deployment(deployment, namespace).metadata.uid
    apps.delete_namespaced_deployment(deployment, namespace)
    wait_for(
        lambda: _uid_changed(apps, namespace, deployment, old_uid),
        timeout=10,
        what="the long-named resource's deleted Deployment to be recreated",
    )


def test_missing_secret_holds_back_only_its_exporter_until_it_appears(
    admin_api: client.ApiClient, namespace: str, operator: OperatorProcess
) -> None:
    core = client.CoreV1Api(admin_api)
    for secret, key in (("shop-metrics", "token"), ("shop-broker", "url"), ALERT_WEBHOOK.values()):
        core.create_namespaced_secret(
            namespace,
            client.V1Secret(metadata=client.V1ObjectMeta(name=secret), string_data={key: "s3cret"}),
        )
    spec = full_spec()
    CustomApi(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("shop", spec)
    )
    cr = wait_condition(admin_api, namespace, "shop", "Ready", "False", "SecretMissing")
    assert (
        "exporters.postgres.dataSource: Secret shop-db does not exist: postgres-exporter is held"
        in condition(cr, "Ready")["message"]
    )
    assert condition(cr, "Degraded")["reason"] == "SecretMissing"
    found = children(admin_api, namespace, "shop")
    assert {
        "ServiceMonitor/shop-app-metrics",
        "PrometheusRule/shop-rules",
        "Deployment/shop-redis-exporter",
        "Deployment/shop-celery-exporter",
        "Deployment/shop-nginx-exporter",
    } <= set(found)
    assert not [key for key in found if "postgres" in key]
    assert ("Warning", "SecretMissing") in [e[:2] for e in _events(admin_api, namespace, "shop")]

    # The Secret appears with the wrong key, then gets the right one: each is noticed within
    # seconds (the resync is minutes away), from the Secret watch alone.
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(metadata=client.V1ObjectMeta(name="shop-db"), string_data={"url": "x"}),
    )
    wait_for(
        lambda: (
            "Secret shop-db has no key dsn"
            in condition(get_cr(admin_api, namespace, "shop"), "Ready").get("message", "")
        ),
        timeout=10,
        what="the operator to notice the new Secret",
    )
    started = time.monotonic()
    core.patch_namespaced_secret("shop-db", namespace, {"stringData": {"dsn": "s3cret"}})
    wait_condition(admin_api, namespace, "shop", "Ready", "True", timeout=10)
    print(f"fixed Secret noticed in {time.monotonic() - started:.1f}s")
    assert "Deployment/shop-postgres-exporter" in children(admin_api, namespace, "shop")
    logs = operator.logs()
    assert "s3cret" not in logs and base64.b64encode(b"s3cret").decode() not in logs


def test_users_rule_groups_are_appended_and_a_rule_too_large_is_refused_once(
    admin_api: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    control_plane: Any,
) -> None:
    """The user's groups end our PrometheusRule. Grown past what the server stores, the CR
    says so (Ready=False, ObjectTooLarge, one event) and nothing is retried or half-applied."""
    mine = {"name": "shop-own", "rules": [{"alert": "ShopQuiet", "expr": "up == 0", "for": "5m"}]}
    spec = {"app": {"podSelector": {"app": "x"}}, "extraRuleGroups": [mine]}
    CustomApi(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, cr_body("big", spec)
    )
    wait_condition(admin_api, namespace, "big", "Ready", "True")

    def groups() -> list[dict[str, Any]]:
        rule = CustomApi(admin_api).get_namespaced_custom_object(
            *MONITORING, namespace, "prometheusrules", "big-rules"
        )
        result: list[dict[str, Any]] = rule["spec"]["groups"]
        return result

    # As written, its alert labelled with the resource as ours are (so routing routes it) and
    # with the resource's namespace (so no expression can make it another namespace's).
    (shop_quiet,) = mine["rules"]
    labels = {"namespace": namespace, "jewelry_monitoring": "big"}
    applied = {**mine, "rules": [{**shop_quiet, "labels": labels}]}
    assert groups()[-1] == applied
    assert all(group["name"].startswith(f"jewelry.{namespace}.big.") for group in groups()[:-1])

    huge = {"name": "shop-huge", "rules": [{"record": "shop:x", "expr": "up" + " or up" * 190_000}]}
    before = audit_position(control_plane.audit_log)
    patch_spec(admin_api, namespace, "big", {"extraRuleGroups": [mine, huge]})
    cr = wait_condition(admin_api, namespace, "big", "Ready", "False", "ObjectTooLarge")
    message = condition(cr, "Ready")["message"]
    assert message.startswith("extraRuleGroups: PrometheusRule big-rules would be "), message
    wait_for(
        lambda: (
            ("Warning", "ObjectTooLarge") in [e[:2] for e in _events(admin_api, namespace, "big")]
        ),
        timeout=10,
        what="the ObjectTooLarge event, which follows the status",
    )
    start = audit_position(control_plane.audit_log)
    time.sleep(5)
    assert writes_in(control_plane.audit_log, operator, start, namespace) == []
    refused = [
        entry
        for entry in map(json.loads, control_plane.audit_log.read_text().splitlines()[before:])
        if entry.get("user", {}).get("username") == operator.user
        and entry.get("stage") == "ResponseComplete"
        and entry.get("responseStatus", {}).get("code", 200) >= 400
        and entry.get("objectRef", {}).get("namespace") == namespace
    ]
    assert refused == [], "the operator sent what the server refused"
    warnings = [e for e in _events(admin_api, namespace, "big") if e[0] == "Warning"]
    assert [e[1] for e in warnings] == ["ObjectTooLarge"]
    assert groups()[-1] == applied, "nothing of the refused generation was applied"
