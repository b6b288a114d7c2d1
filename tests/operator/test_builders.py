"""Unit tests of the pure builders: a spec in, the exact objects out. No cluster."""

from __future__ import annotations

from typing import Any

import pytest

from jewelry_monitoring.builders.app import app_objects
from jewelry_monitoring.builders.common import Owner, child_name
from jewelry_monitoring.builders.desired import desired_objects, spec_hash, without_empty
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
        "requests": {"cpu": "10m", "memory": "32Mi"},
        "limits": {"cpu": "200m", "memory": "128Mi"},
    }
    assert container["livenessProbe"]["httpGet"] == {"path": "/", "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/", "port": "metrics"}

    service = objects["Service/shop-postgres-exporter"]["spec"]
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
    assert len(objects) == 12
    redis = objects["Deployment/shop-redis-exporter"]["spec"]["template"]["spec"]["containers"][0]
    assert redis["env"] == [
        {"name": "REDIS_ADDR", "value": "redis://redis:6379"},
        {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "r", "key": "pw"}}},
    ]
    nginx = objects["Deployment/shop-nginx-exporter"]["spec"]["template"]["spec"]["containers"][0]
    assert nginx["args"] == ["--nginx.scrape-uri=http://web:8080/stub_status"]
    # No CR can make the operator run anything on the host: no DaemonSet, no host access.
    for key, obj in objects.items():
        assert not key.startswith("DaemonSet/")
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


@pytest.mark.parametrize("length", [10, 63, 80])
def test_child_names_stay_valid_dns_labels(length: int) -> None:
    name = child_name("x" * length, "postgres-exporter")
    assert len(name) <= 63
    assert child_name("x" * length, "postgres-exporter") == name
    if length == 80:
        assert child_name("x" * 79 + "y", "postgres-exporter") != name


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
