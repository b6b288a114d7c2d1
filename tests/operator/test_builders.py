"""Unit tests of the pure builders: a spec in, the exact objects out. No cluster."""

from __future__ import annotations

import re
from typing import Any

import pytest

from devkit.probes import liveness_problems
from jewelry_monitoring.builders.app import app_objects
from jewelry_monitoring.builders.common import Owner, child_name, instance_label
from jewelry_monitoring.builders.desired import (
    desired_objects,
    size_problems,
    spec_hash,
    without_empty,
)
from jewelry_monitoring.builders.exporters import EXPORTERS, exporter_objects
from jewelry_monitoring.spec import EXPORTER_NAMES, JewelryMonitoringSpec

ALL_MONITORING = frozenset({"ServiceMonitor", "PrometheusRule"})


def owner(spec: dict[str, Any]) -> Owner:
    return Owner(
        name="shop",
        namespace="jewelry",
        uid="uid-1",
        spec=JewelryMonitoringSpec.model_validate(
            {"app": {"podSelector": {"app": "shop"}}, **spec}
        ),
    )


def by_key(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


POSTGRES = {
    "exporters": {"postgres": {"enabled": True, "dataSource": {"name": "db", "key": "dsn"}}}
}


def test_postgres_exporter_objects_read_like_a_manifest() -> None:
    objects = by_key(exporter_objects(owner(POSTGRES)))
    assert set(objects) == {
        "Deployment/shop-postgres-exporter",
        "Service/shop-postgres-exporter",
        "ServiceMonitor/shop-postgres-exporter",
        "NetworkPolicy/shop-postgres-exporter",
    }
    pod = objects["Deployment/shop-postgres-exporter"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65534,
        "runAsGroup": 65534,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = pod["containers"][0]
    assert container["image"] == "quay.io/prometheuscommunity/postgres-exporter:v0.17.1"
    assert container["env"] == [
        {"name": "DATA_SOURCE_NAME", "valueFrom": {"secretKeyRef": {"name": "db", "key": "dsn"}}}
    ]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9187, "protocol": "TCP"}]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"] == {
        "requests": {"cpu": "10m", "memory": "32Mi", "ephemeral-storage": "16Mi"},
        "limits": {"cpu": "200m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
    }
    assert container["livenessProbe"]["tcpSocket"] == {"port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "metrics"}

    service = objects["Service/shop-postgres-exporter"]["spec"]
    assert service["clusterIP"] == "None"  # headless: takes no address from the Service range
    assert service["ports"] == [
        {"name": "metrics", "port": 9187, "targetPort": "metrics", "protocol": "TCP"}
    ]
    monitor = objects["ServiceMonitor/shop-postgres-exporter"]["spec"]
    assert monitor == {
        "selector": {
            "matchLabels": {
                "app.kubernetes.io/name": "postgres-exporter",
                "app.kubernetes.io/instance": "shop",
            }
        },
        "namespaceSelector": {"matchNames": ["jewelry"]},
        "endpoints": [
            {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
        ],
        # The cardinality guard's defaults (spec scrapeLimits).
        "sampleLimit": 20000,
        "labelLimit": 40,
        "labelNameLengthLimit": 128,
        "labelValueLengthLimit": 2048,
    }
    # The Service and the pods agree on the selector, so the ServiceMonitor finds endpoints.
    pod_labels = objects["Deployment/shop-postgres-exporter"]["spec"]["template"]["metadata"]
    assert service["selector"].items() <= pod_labels["labels"].items()


def test_every_exporter_is_described_and_buildable() -> None:
    assert set(EXPORTERS) == set(EXPORTER_NAMES)
    spec = {
        "exporters": {
            "postgres": {"enabled": True, "dataSource": {"name": "db", "key": "dsn"}},
            "redis": {"enabled": True, "password": {"name": "r", "key": "pw"}},
            "nginx": {"enabled": True, "scrapeUri": "http://web:8080/stub_status"},
            "celery": {"enabled": True, "brokerUrl": {"name": "b", "key": "url"}},
        }
    }
    objects = by_key(exporter_objects(owner(spec)))
    assert len(objects) == 16
    redis = objects["Deployment/shop-redis-exporter"]["spec"]["template"]["spec"]["containers"][0]
    assert redis["env"] == [
        {"name": "REDIS_ADDR", "value": "redis://redis:6379"},
        {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "r", "key": "pw"}}},
    ]
    nginx = objects["Deployment/shop-nginx-exporter"]["spec"]["template"]["spec"]["containers"][0]
    assert nginx["args"] == ["--nginx.scrape-uri=http://web:8080/stub_status"]
    # celery-exporter exits on a broker error without a retry interval (tests/images runs
    # it through a broker outage with these args).
    celery = objects["Deployment/shop-celery-exporter"]["spec"]["template"]["spec"]["containers"][0]
    assert celery["args"] == ["--retry-interval=5"]
    # No CR can make the operator run anything on the host: no DaemonSet, no host access.
    # No exporter takes an address from the Service range (1,000 resources would take 4,000).
    for key, obj in objects.items():
        assert not key.startswith("DaemonSet/")
        if obj["kind"] == "Service":
            assert obj["spec"]["clusterIP"] == "None", key
        if obj["kind"] == "Deployment":
            pod = obj["spec"]["template"]["spec"]
            assert not {"hostNetwork", "hostPID", "hostIPC", "volumes"} & set(pod), key


def test_app_service_and_monitor_with_basic_auth_and_tls() -> None:
    spec = {
        "app": {
            "podSelector": {"app": "shop", "tier": "web"},
            "port": "http",
            "scheme": "https",
            "basicAuth": {
                "username": {"name": "m", "key": "user"},
                "password": {"name": "m", "key": "pass"},
            },
            "tls": {"serverName": "shop.jewelry", "ca": {"name": "ca", "key": "ca.crt"}},
            "metricRelabelings": [{"action": "drop", "regex": "django_model_.*"}],
        }
    }
    service, monitor = app_objects(owner(spec))
    assert service["spec"]["selector"] == {"app": "shop", "tier": "web"}
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    endpoint = monitor["spec"]["endpoints"][0]
    assert endpoint["basicAuth"] == {
        "username": {"name": "m", "key": "user"},
        "password": {"name": "m", "key": "pass"},
    }
    assert endpoint["tlsConfig"] == {
        "insecureSkipVerify": False,
        "serverName": "shop.jewelry",
        "ca": {"secret": {"name": "ca", "key": "ca.crt"}},
    }
    assert endpoint["metricRelabelings"] == [{"action": "drop", "regex": "django_model_.*"}]
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "app-metrics",
        "app.kubernetes.io/instance": "shop",
    }


def test_app_can_be_switched_off_without_losing_the_rest() -> None:
    objects = by_key(
        desired_objects(
            owner({"app": {"podSelector": {"a": "b"}, "enabled": False}}), ALL_MONITORING
        )
    )
    assert not [key for key in objects if "app-metrics" in key]
    assert "PrometheusRule/shop-rules" in objects


def test_desired_state_skips_monitoring_kinds_without_their_crds() -> None:
    objects = desired_objects(owner({**POSTGRES, "dashboards": {"enabled": True}}), frozenset())
    kinds = {o["kind"] for o in objects}
    assert "ServiceMonitor" not in kinds and "PrometheusRule" not in kinds
    assert {"Deployment", "Service", "ConfigMap"} <= kinds


def test_user_labels_and_annotations_reach_every_object() -> None:
    spec = {
        **POSTGRES,
        "commonLabels": {"team": "gems"},
        "commonAnnotations": {"owner": "gems@jewelry"},
        "monitorLabels": {"release": "kps"},
    }
    for obj in desired_objects(owner(spec), ALL_MONITORING):
        meta = obj["metadata"]
        assert meta["labels"]["team"] == "gems", obj["kind"]
        assert meta["annotations"]["owner"] == "gems@jewelry", obj["kind"]
        assert meta["ownerReferences"][0]["uid"] == "uid-1"
        assert meta["namespace"] == "jewelry"
        has_release = meta["labels"].get("release") == "kps"
        assert has_release == (obj["kind"] in ALL_MONITORING), obj["kind"]


def test_dashboard_config_maps_carry_sidecar_label_and_folder() -> None:
    spec = {"dashboards": {"enabled": True, "folder": "Shop", "annotations": {"x": "y"}}}
    maps = [o for o in desired_objects(owner(spec), ALL_MONITORING) if o["kind"] == "ConfigMap"]
    assert len(maps) == 4
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"]["grafana_folder"] == "Shop"
        assert config_map["metadata"]["annotations"]["x"] == "y"
        (file_name,) = config_map["data"]
        assert file_name.endswith(".json")
    by_default = desired_objects(owner({}), ALL_MONITORING)
    assert not [o for o in by_default if o["kind"] == "ConfigMap"]


def test_empty_values_are_not_sent_and_hash_tracks_content() -> None:
    assert without_empty({"a": {}, "b": [], "c": None, "d": {"e": {}}, "f": [{"g": []}]}) == {
        "f": [{}]
    }
    first = desired_objects(owner(POSTGRES), ALL_MONITORING)
    again = desired_objects(owner(POSTGRES), ALL_MONITORING)
    assert first == again
    changed = desired_objects(
        owner({"exporters": {"postgres": {**POSTGRES["exporters"]["postgres"], "interval": "1m"}}}),
        ALL_MONITORING,
    )
    hashes = {o["metadata"]["name"] + o["kind"]: spec_hash(o) for o in first}
    changed_hashes = {o["metadata"]["name"] + o["kind"]: spec_hash(o) for o in changed}
    differing = {key for key in hashes if hashes[key] != changed_hashes[key]}
    assert differing == {"shop-postgres-exporterServiceMonitor"}


SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


@pytest.mark.parametrize(
    "instance", ["shop", "x" * 46, "x" * 47, "x" * 63, "x" * 253, "shop.eu", "1shop", "9" * 253]
)
def test_child_names_and_labels_stay_valid_at_every_length(instance: str) -> None:
    """A resource may be named any DNS subdomain (253); its children's names must be Service
    names (RFC 1035 labels) and its labels label values: 63 characters at most."""
    objects = desired_objects(
        Owner(
            instance, "jewelry", "uid", owner({**POSTGRES, "dashboards": {"enabled": True}}).spec
        ),
        ALL_MONITORING,
    )
    for obj in objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and SERVICE_NAME.fullmatch(name), name
        for value in obj["metadata"]["labels"].values():
            assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), value
    assert [o["metadata"]["name"] for o in objects] == [
        o["metadata"]["name"]
        for o in desired_objects(
            Owner(
                instance, "jewelry", "uid", owner(POSTGRES | {"dashboards": {"enabled": True}}).spec
            ),
            ALL_MONITORING,
        )
    ], "names must be stable"
    if len(f"{instance}-postgres-exporter") <= 63 and SERVICE_NAME.fullmatch(instance):
        assert child_name(instance, "postgres-exporter") == f"{instance}-postgres-exporter"


def test_names_that_would_collide_stay_distinct() -> None:
    """Long names alike in their first 200 characters, and names that differ only where
    they are made valid ("." and "-"), give distinct child names and owner labels."""
    prefix = "jewelry-shop-production." + "x" * 200
    instances = [f"{prefix}{i}" for i in range(2000)] + ["shop.eu", "shop-eu", "1shop", "jm-1shop"]
    for component in ("app-metrics", "postgres-exporter", "dashboard-overview"):
        names = {child_name(instance, component) for instance in instances}
        assert len(names) == len(instances), component
    labels = {instance_label(instance) for instance in instances}
    assert len(labels) == len(instances)
    # A shortened label cannot be any resource's name, which has no "_".
    assert all("_" in instance_label(instance) for instance in instances if len(instance) > 63)
    assert instance_label("x" * 63) == "x" * 63


def test_users_part_of_label_wins_over_ours() -> None:
    objects = desired_objects(
        owner({"commonLabels": {"app.kubernetes.io/part-of": "jewelry-shop"}}), ALL_MONITORING
    )
    assert {o["metadata"]["labels"]["app.kubernetes.io/part-of"] for o in objects} == {
        "jewelry-shop"
    }
    default = desired_objects(owner({}), ALL_MONITORING)
    assert {o["metadata"]["labels"]["app.kubernetes.io/part-of"] for o in default} == {
        "jewelry-monitoring"
    }


@pytest.mark.parametrize("exporter", EXPORTER_NAMES)
def test_exporter_liveness_is_more_tolerant_than_readiness(exporter: str) -> None:
    spec = {"exporters": {exporter: {"enabled": True, "dataSource": {"name": "d", "key": "k"}}}}
    if exporter != "postgres":
        spec = {"exporters": {exporter: {"enabled": True}}}
    (deployment,) = [o for o in exporter_objects(owner(spec)) if o["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert liveness_problems(container) == []
    # The check can fail: the probes as they were (identical but for the failure threshold).
    identical = {"httpGet": container["readinessProbe"]["httpGet"], "periodSeconds": 10}
    assert liveness_problems(
        {
            "livenessProbe": {**identical, "timeoutSeconds": 5, "failureThreshold": 6},
            "readinessProbe": {**identical, "timeoutSeconds": 5, "failureThreshold": 3},
        }
    )


def test_ephemeral_storage_is_added_unless_the_user_sets_it() -> None:
    def resources(given: dict[str, Any]) -> dict[str, Any]:
        spec = {"exporters": {"redis": {"enabled": True, "resources": given}}}
        (deployment,) = [o for o in exporter_objects(owner(spec)) if o["kind"] == "Deployment"]
        result: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0][
            "resources"
        ]
        return result

    assert resources({"limits": {"memory": "1Gi"}}) == {
        "requests": {"ephemeral-storage": "16Mi"},
        "limits": {"memory": "1Gi", "ephemeral-storage": "64Mi"},
    }
    assert resources({"limits": {"ephemeral-storage": "1Gi"}}) == {
        "requests": {},
        "limits": {"ephemeral-storage": "1Gi"},
    }


def _policy(spec: dict[str, Any], exporter: str) -> dict[str, Any]:
    objects = by_key(exporter_objects(owner(spec)))
    return objects[f"NetworkPolicy/shop-{exporter}-exporter"]


def test_network_policy_admits_prometheus_to_the_metrics_port_only() -> None:
    policy = _policy(POSTGRES, "postgres")
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    spec = policy["spec"]
    assert spec["podSelector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "postgres-exporter",
            "app.kubernetes.io/instance": "shop",
        }
    }
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [
        {
            "from": [
                {
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
                    "namespaceSelector": {
                        "matchExpressions": [
                            {"key": "kubernetes.io/metadata.name", "operator": "Exists"}
                        ]
                    },
                }
            ],
            "ports": [{"protocol": "TCP", "port": 9187}],
        }
    ]
    dns, target = spec["egress"]
    assert dns == {
        "to": [
            {
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "kube-system"}
                },
            }
        ],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }
    # The DSN is in a Secret the operator never reads: any address, PostgreSQL's port.
    assert target == {"ports": [{"protocol": "TCP", "port": 5432}]}
    assert "Secret" in policy["metadata"]["annotations"]["monitoring.jewelry.io/egress"]
    custom = {
        "networkPolicy": {
            "prometheus": {
                "podSelector": {"app": "prom"},
                "namespaceSelector": {"team": "monitoring"},
            }
        }
    }
    (peer,) = _policy({**POSTGRES, **custom}, "postgres")["spec"]["ingress"][0]["from"]
    assert peer == {
        "podSelector": {"matchLabels": {"app": "prom"}},
        "namespaceSelector": {"matchLabels": {"team": "monitoring"}},
    }


@pytest.mark.parametrize(
    ("address", "to", "port", "why"),
    [
        (
            "redis://cache:6380",
            [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "jewelry"}}}],
            6380,
            "cache is a Service there",
        ),
        (
            "cache.other.svc.cluster.local:6379",
            [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}}}],
            6379,
            "Service there",
        ),
        ("rediss://10.1.2.3", [{"ipBlock": {"cidr": "10.1.2.3/32"}}], 6379, "the target"),
        ("redis://[fd00::5]:7000", [{"ipBlock": {"cidr": "fd00::5/128"}}], 7000, "the target"),
        ("redis://cache.example.com:6379", None, 6379, "any address"),
    ],
)
def test_redis_egress_follows_its_address(
    address: str, to: list[dict[str, Any]] | None, port: int, why: str
) -> None:
    policy = _policy({"exporters": {"redis": {"enabled": True, "address": address}}}, "redis")
    target = policy["spec"]["egress"][1]
    assert target.get("to") == to
    assert target["ports"] == [{"protocol": "TCP", "port": port}]
    assert why in policy["metadata"]["annotations"]["monitoring.jewelry.io/egress"]


@pytest.mark.parametrize(
    ("exporter", "ports"), [("postgres", [5432]), ("celery", [6379, 5672, 5671])]
)
def test_a_target_in_a_secret_is_not_silently_confined_to_the_namespace(
    exporter: str, ports: list[int]
) -> None:
    """The DSN or broker URL is in a Secret the operator never reads: it may name RDS,
    ElastiCache, a RabbitMQ (5672, or 5671 with TLS) or a CloudNativePG cluster in another
    namespace. Confined to this namespace's pods, the exporter could reach none of them and
    PostgresDown would page while the database is fine: any address on the target's usual
    ports, and the annotation names the field that narrows it."""
    spec = {
        "exporters": {
            "postgres": POSTGRES["exporters"]["postgres"],
            "celery": {"enabled": True, "brokerUrl": {"name": "b", "key": "url"}},
        }
    }
    policy = _policy(spec, exporter)
    assert policy["spec"]["egress"][1] == {
        "ports": [{"protocol": "TCP", "port": port} for port in ports]
    }
    why = policy["metadata"]["annotations"]["monitoring.jewelry.io/egress"]
    assert why.startswith(f"any address on {ports}: the target is in a Secret")
    assert f"set exporters.{exporter}.networkTarget" in why


def test_network_target_in_the_cr_wins_and_the_policy_can_be_switched_off() -> None:
    nginx = {"enabled": True, "scrapeUri": "https://web.example.com/stub_status"}
    assert _policy({"exporters": {"nginx": nginx}}, "nginx")["spec"]["egress"][1] == {
        "ports": [{"protocol": "TCP", "port": 443}]
    }
    pods = {**nginx, "networkTarget": {"podSelector": {"app": "web"}, "ports": [8080]}}
    assert _policy({"exporters": {"nginx": pods}}, "nginx")["spec"]["egress"][1] == {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "jewelry"}},
                "podSelector": {"matchLabels": {"app": "web"}},
            }
        ],
        "ports": [{"protocol": "TCP", "port": 8080}],
    }
    outside = {**nginx, "networkTarget": {"cidrs": ["192.0.2.0/24"]}}
    assert _policy({"exporters": {"nginx": outside}}, "nginx")["spec"]["egress"][1] == {
        "to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
        "ports": [{"protocol": "TCP", "port": 443}],
    }
    off = {"exporters": {"nginx": nginx}, "networkPolicy": {"enabled": False}}
    assert not [o for o in exporter_objects(owner(off)) if o["kind"] == "NetworkPolicy"]


def test_objects_too_large_for_the_server_are_named_with_the_field_to_change() -> None:
    small = desired_objects(owner(POSTGRES), ALL_MONITORING)
    assert size_problems(small) == []
    huge = {"name": "mine", "rules": [{"record": "a:b", "expr": "up" + " or up" * 180_000}]}
    objects = desired_objects(owner({"extraRuleGroups": [huge]}), ALL_MONITORING)
    (problem,) = size_problems(objects)
    assert re.fullmatch(
        r"extraRuleGroups: PrometheusRule shop-rules would be 1\d{6} bytes, more than the "
        r"1048576 it may have: make extraRuleGroups smaller",
        problem,
    ), problem
    # A ConfigMap's data has its own limit: 1 MiB.
    dashboard = {
        "kind": "ConfigMap",
        "metadata": {"name": "shop-dashboard-x"},
        "data": {"x.json": "x" * (1024 * 1024 + 1)},
    }
    assert size_problems([dashboard]) == [
        "dashboards: ConfigMap shop-dashboard-x would be 1048577 bytes, more than the 1048576 "
        "it may have: make dashboards smaller"
    ]


EVERY_NAMESPACE = {
    "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "Exists"}]
}


def test_an_empty_namespace_selector_means_every_namespace_as_in_kubernetes() -> None:
    """``namespaceSelector: {}`` selects every namespace; sent without it, a peer would be
    pods of the policy's own namespace only: a Prometheus elsewhere could not scrape, and
    the exporters could not reach the cluster DNS."""
    peers = {
        "prometheus": {"podSelector": {"app": "prom"}, "namespaceSelector": {}},
        "dns": {"podSelector": {"k8s-app": "kube-dns"}, "namespaceSelector": {}},
    }
    objects = desired_objects(owner({**POSTGRES, "networkPolicy": peers}), ALL_MONITORING)
    (policy,) = [o for o in objects if o["kind"] == "NetworkPolicy"]
    (prometheus,) = policy["spec"]["ingress"][0]["from"]
    (dns,) = policy["spec"]["egress"][0]["to"]
    assert prometheus.get("namespaceSelector") == EVERY_NAMESPACE
    assert dns.get("namespaceSelector") == EVERY_NAMESPACE


def test_a_resource_with_nothing_to_alert_on_still_sends_its_rules_spec() -> None:
    """prometheus-operator's PrometheusRule requires ``spec``: an empty one must be sent, not
    dropped with the empty maps (the server would refuse the object on every retry)."""
    spec = {"app": {"podSelector": {"app": "shop"}, "enabled": False}}
    objects = desired_objects(owner(spec), ALL_MONITORING)
    (rules,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert rules.get("spec") == {}
