"""The typed spec, its semantic checks, and the CRD generated from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from jewelry_monitoring.builders.common import Owner, standard_labels
from jewelry_monitoring.builders.rules import KNOWN_ALERTS
from jewelry_monitoring.config import load
from jewelry_monitoring.crd import build_crd
from jewelry_monitoring.spec import (
    EXPORTER_NAMES,
    LATENCY_BUCKETS,
    OPERATOR_LABELS,
    JewelryMonitoringSpec,
    default_image_repositories,
    duration_seconds,
    image_allowed,
    image_repository,
    quantity_value,
    secret_refs,
    semantic_problems,
    validate,
)

CRD_FILE = (
    Path(__file__).resolve().parents[2]
    / "charts/jewelry-monitoring/files/crds/monitoring.jewelry.io_jewelrymonitorings.yaml"
)


def parse(spec: dict[str, object]) -> JewelryMonitoringSpec:
    return JewelryMonitoringSpec.model_validate({"app": {"podSelector": {"app": "x"}}, **spec})


def test_committed_crd_is_the_generated_one() -> None:
    committed = yaml.safe_load(CRD_FILE.read_text())
    assert committed == build_crd(), (
        "the CRD in the chart is stale: regenerate it with `jm-dev manifests` (or "
        "`.venv/bin/jewelry-monitoring crd > "
        + str(CRD_FILE.relative_to(CRD_FILE.parents[3]))
        + "`)"
    )


def test_defaults_scrape_the_app_every_15s_and_exporters_every_30s() -> None:
    spec = parse({})
    assert (spec.app.path, spec.app.interval, spec.app.port) == ("/metrics", "15s", 8000)
    assert spec.exporters.postgres.interval == "30s"
    assert not spec.exporters.enabled()
    assert spec.dashboards.labels == {"grafana_dashboard": "1"}
    assert spec.dashboards.enabled is False  # the chart's shared dashboards cover every CR
    assert spec.alerts.min_request_rate == 0.1


def test_schema_carries_defaults_and_validation_for_the_server() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    app = schema["properties"]["app"]
    assert app["required"] == ["podSelector"]
    assert app["properties"]["interval"]["default"] == "15s"
    assert app["properties"]["port"] == {
        "default": 8000,
        "description": "The pods' metrics port, by number or container port name.",
        "x-kubernetes-int-or-string": True,
    }
    assert schema["properties"]["exporters"]["default"] == {}
    objective = schema["properties"]["slos"]["properties"]["availability"]["properties"]
    assert objective["objective"]["exclusiveMinimum"] is True
    assert objective["objective"]["minimum"] == 50
    overrides = schema["properties"]["alerts"]["properties"]["overrides"]
    assert "for" in overrides["additionalProperties"]["properties"]


def test_schema_violations_are_rejected_by_the_model_too() -> None:
    with pytest.raises(ValidationError):
        parse({"app": {"podSelector": {}}})
    with pytest.raises(ValidationError):
        parse({"app": {"podSelector": {"a": "b"}, "interval": "fast"}})
    with pytest.raises(ValidationError):
        parse({"unknownField": 1})


def test_semantic_problems_name_the_fields() -> None:
    spec = parse(
        {
            "app": {
                "podSelector": {"a": "b"},
                "interval": "10s",
                "scrapeTimeout": "1m",
                "basicAuth": {
                    "username": {"name": "s", "key": "u"},
                    "password": {"name": "s", "key": "p"},
                },
                "bearerTokenSecret": {"name": "s", "key": "t"},
                "tls": {"insecureSkipVerify": True},
            },
            "exporters": {"postgres": {"enabled": True}},
            "alerts": {"overrides": {"NoSuchAlert": {"disabled": True}}},
            "slos": {"latency": {"objective": 99, "thresholdSeconds": 0.3}},
        }
    )
    problems = semantic_problems(spec, KNOWN_ALERTS)
    assert problems == [
        "app.scrapeTimeout 1m is longer than app.interval 10s",
        "app.basicAuth and app.bearerTokenSecret are exclusive: choose one",
        "app.tls is set but app.scheme is http: set scheme to https",
        "exporters.postgres is enabled but exporters.postgres.dataSource (a secretKeyRef)"
        " is not set",
        f"alerts.overrides names unknown alerts ['NoSuchAlert']; known: {sorted(KNOWN_ALERTS)}",
        "slos.latency.thresholdSeconds 0.3 is not a latency bucket boundary; choose one of "
        "[0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, "
        "75.0]",
    ]
    assert semantic_problems(parse({}), KNOWN_ALERTS) == []


def test_secret_refs_lists_only_enabled_parts() -> None:
    spec = parse(
        {
            "app": {"podSelector": {"a": "b"}, "bearerTokenSecret": {"name": "t", "key": "k"}},
            "exporters": {
                "postgres": {"enabled": False, "dataSource": {"name": "db", "key": "dsn"}},
                "redis": {"enabled": True, "password": {"name": "r", "key": "pw"}},
            },
        }
    )
    assert {where: (r.name, r.key) for where, r in secret_refs(spec).items()} == {
        "app.bearerTokenSecret": ("t", "k"),
        "exporters.redis.password": ("r", "pw"),
    }


def test_latency_buckets_are_the_apps() -> None:
    """The operator's copy of the app's histogram buckets (for SLO thresholds) must match."""
    from jewelry_shop import settings

    assert (*LATENCY_BUCKETS, float("inf")) == settings.PROMETHEUS_LATENCY_BUCKETS


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("15s", 15), ("1m30s", 90), ("2h", 7200), ("500ms", 0.5), ("1d", 86400)],
)
def test_duration_seconds(duration: str, seconds: float) -> None:
    assert duration_seconds(duration) == seconds


def test_operator_labels_in_user_label_maps_are_rejected_by_name() -> None:
    spec = parse(
        {
            "commonLabels": {"app.kubernetes.io/instance": "x", "team": "gems"},
            "monitorLabels": {"monitoring.jewelry.io/owner": "y", "release": "kps"},
            "dashboards": {"labels": {"app.kubernetes.io/managed-by": "me"}},
        }
    )
    assert semantic_problems(spec, KNOWN_ALERTS) == [
        "monitorLabels sets monitoring.jewelry.io/owner: the operator sets these labels "
        "itself to find and select its objects; remove them",
        "commonLabels sets app.kubernetes.io/instance: the operator sets these labels itself "
        "to find and select its objects; remove them",
        "dashboards.labels sets app.kubernetes.io/managed-by: the operator sets these labels "
        "itself to find and select its objects; remove them",
    ]
    # part-of is descriptive, not used to select: the user's value is honoured.
    assert (
        semantic_problems(
            parse({"commonLabels": {"app.kubernetes.io/part-of": "jewelry-shop"}}), KNOWN_ALERTS
        )
        == []
    )


def test_operator_labels_are_exactly_those_the_builders_set_besides_part_of() -> None:
    owner = Owner(name="shop", namespace="ns", uid="u", spec=parse({}))
    assert set(standard_labels(owner, "rules")) - {"app.kubernetes.io/part-of"} == OPERATOR_LABELS


@pytest.mark.parametrize(
    ("text", "same_as"),
    [("0.5", "500m"), ("1024Mi", "1Gi"), ("1e3", "1k"), ("1.5Gi", "1536Mi"), (".1", "100m")],
)
def test_quantities_compare_by_value(text: str, same_as: str) -> None:
    assert quantity_value(text) == quantity_value(same_as) is not None


def test_resources_must_be_quantities() -> None:
    spec = parse(
        {
            "exporters": {
                "redis": {
                    "enabled": True,
                    "resources": {"requests": {"cpu": "half", "memory": "1Gi"}},
                }
            }
        }
    )
    assert semantic_problems(spec, KNOWN_ALERTS) == [
        "exporters.redis.resources.requests.cpu: 'half' is not a quantity"
    ]
    assert quantity_value("1Mi2") is None and quantity_value("") is None


# --- Exporter images: an allowlist the cluster admin sets in the chart ---------------------


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("oliver006/redis_exporter:v1.74.0", "docker.io/oliver006/redis_exporter"),
        ("docker.io/oliver006/redis_exporter@sha256:abc", "docker.io/oliver006/redis_exporter"),
        ("redis", "docker.io/library/redis"),
        ("registry:5000/team/exporter:1", "registry:5000/team/exporter"),
        ("localhost/jm/redis-exporter:dev", "localhost/jm/redis-exporter"),
        (
            "quay.io/prometheuscommunity/postgres-exporter",
            "quay.io/prometheuscommunity/postgres-exporter",
        ),
    ],
)
def test_image_repository_is_normalised_like_a_runtime_does(image: str, repository: str) -> None:
    assert image_repository(image) == repository


def test_default_images_are_allowed_in_any_tag_and_nothing_else_by_default() -> None:
    assert set(default_image_repositories()) == {
        "quay.io/prometheuscommunity/postgres-exporter",
        "docker.io/oliver006/redis_exporter",
        "docker.io/nginx/nginx-prometheus-exporter",
        "docker.io/danihodovic/celery-exporter",
    }
    assert image_allowed("oliver006/redis_exporter:v1.80.0", ())
    assert image_allowed("docker.io/nginx/nginx-prometheus-exporter@sha256:0a", ())
    for image in (
        "localhost/jm/redis-exporter:dev",  # the dev loop's images need the allowlist
        "quay.io/prometheuscommunity/postgres-exporter-evil:1",  # a longer name, not a prefix
        "evil.example/oliver006/redis_exporter:v1",
        "redis",
    ):
        assert not image_allowed(image, ()), image


def test_allowlist_takes_repositories_and_prefixes() -> None:
    allowed = ("localhost/jm/", "registry.example/mirror/redis_exporter", "team/")
    assert image_allowed("localhost/jm/redis-exporter:dev", allowed)
    assert image_allowed("registry.example/mirror/redis_exporter:v1", allowed)
    assert not image_allowed("registry.example/mirror/redis_exporter-evil:v1", allowed)
    assert not image_allowed("registry.example/mirror/other:v1", allowed)
    assert image_allowed("docker.io/team/exporter:1", allowed)  # "team/" is docker.io/team/
    assert not image_allowed("localhost/jmx/redis:1", allowed)


def test_disallowed_image_of_an_enabled_exporter_is_a_problem_naming_the_field() -> None:
    spec = parse(
        {
            "exporters": {
                "redis": {"enabled": True, "image": "localhost/jm/redis-exporter:dev"},
                "nginx": {"enabled": False, "image": "never/runs:1"},
            }
        }
    )
    [problem] = semantic_problems(spec, KNOWN_ALERTS)
    assert problem.startswith(
        "exporters.redis.image 'localhost/jm/redis-exporter:dev' is not allowed"
    )
    assert "exporterImageAllowlist" in problem
    assert semantic_problems(spec, KNOWN_ALERTS, ("localhost/jm/",)) == []


def test_allowlist_comes_from_the_environment() -> None:
    settings = load(env={"JM_ALLOWED_IMAGES": "localhost/jm/, registry.example/x ,"})
    assert settings.allowed_images == ("localhost/jm/", "registry.example/x")
    assert load(env={}).allowed_images == ()


def test_the_exporters_of_a_resource_are_its_four() -> None:
    """The node exporter is the chart's (nodeExporter.enabled): a namespaced resource has no
    field for it, so `exporters.node` is an unknown field like any other, to the model and to
    the server's schema (which prunes it, or refuses it under strict field validation)."""
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    exporters = schema["properties"]["spec"]["properties"]["exporters"]
    assert set(exporters["properties"]) == set(EXPORTER_NAMES)
    assert "x-kubernetes-preserve-unknown-fields" not in exporters
    with pytest.raises(ValidationError, match=r"exporters\.node"):
        parse({"exporters": {"node": {"enabled": True}}})


@pytest.mark.cluster
def test_image_allowlist_on_a_real_api_server(tmp_path: Path) -> None:
    """The chart's exporterImageAllowlist reaches the operator, which refuses other images
    with InvalidSpec naming the field and creates nothing.

    A control plane of its own: the operator runs with the environment the chart renders for
    an allowlist, which the session's operator (default values) does not have.
    """
    from kubernetes import client

    from devkit.cluster import ControlPlane
    from devkit.crs import GROUP, PLURAL, VERSION, CustomApi, condition, cr_body, wait_condition
    from devkit.kubetools import api_client, apply_crds
    from devkit.manifests import chart_crd_files
    from devkit.operator_process import install_rbac, render_chart, start_operator

    values = {"exporterImageAllowlist": ["registry.example/mirror/"]}
    [deployment] = [o for o in render_chart("jm", "jm-system", values) if o["kind"] == "Deployment"]
    env = {
        item["name"]: item["value"]
        for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        if item["name"] == "JM_ALLOWED_IMAGES"
    }
    assert env == {"JM_ALLOWED_IMAGES": "registry.example/mirror/"}

    plane = ControlPlane.create(tmp_path).start()
    try:
        api = api_client(plane.kubeconfig)
        apply_crds(api, chart_crd_files())
        kubeconfig = install_rbac(plane, api, "jm", "jm-system", values)
        user = "system:serviceaccount:jm-system:jm-jewelry-monitoring"
        operator = start_operator(kubeconfig, tmp_path / "operator.log", user, env=env)
        try:
            namespace = "shop"
            core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), CustomApi(api)
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))

            def create(name: str, exporters: dict[str, object]) -> None:
                spec = {"app": {"podSelector": {"app": "shop"}}, "exporters": exporters}
                custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, cr_body(name, spec)
                )

            create("dev", {"redis": {"enabled": True, "image": "localhost/jm/redis:dev"}})
            create("mirror", {"redis": {"enabled": True, "image": "registry.example/mirror/r:1"}})

            dev = wait_condition(api, namespace, "dev", "Ready", "False", "InvalidSpec")
            assert condition(dev, "Ready")["message"].startswith(
                "exporters.redis.image 'localhost/jm/redis:dev' is not allowed"
            )
            wait_condition(api, namespace, "mirror", "Ready", "True")

            images = {
                d.metadata.name: d.spec.template.spec.containers[0].image
                for d in apps.list_namespaced_deployment(namespace).items
            }
            assert images == {"mirror-redis-exporter": "registry.example/mirror/r:1"}
            events = core.list_namespaced_event(namespace, field_selector="reason=InvalidSpec")
            assert [e.involved_object.name for e in events.items] == ["dev"]

            # Back to the pinned image's repository (another tag): accepted, and created.
            custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                "dev",
                {"spec": {"exporters": {"redis": {"image": "oliver006/redis_exporter:v1.80.0"}}}},
            )
            wait_condition(api, namespace, "dev", "Ready", "True")
            dev_exporter = apps.read_namespaced_deployment("dev-redis-exporter", namespace)
            assert dev_exporter.spec.template.spec.containers[0].image == (
                "oliver006/redis_exporter:v1.80.0"
            )
            assert operator.alive()
        finally:
            operator.stop()
    finally:
        plane.stop()


# --- The user's own rule groups --------------------------------------------------------------


def test_users_rule_groups_are_checked_like_a_rule_file() -> None:
    def problems(groups: list[dict[str, Any]]) -> list[str]:
        found, _ = validate(
            {"app": {"podSelector": {"app": "x"}}, "extraRuleGroups": groups}, KNOWN_ALERTS
        )
        return found

    good = {"name": "shop", "rules": [{"alert": "A", "expr": "up == 0", "for": "5m"}]}
    assert problems([good]) == []
    assert problems([good, good]) == [
        "extraRuleGroups[1].name 'shop' is used twice: group names are unique"
    ]
    (clash,) = problems([{**good, "name": "jewelry.ns.shop.app.alerts"}])
    assert clash.startswith("extraRuleGroups[0].name 'jewelry.ns.shop.app.alerts'")
    assert "the operator's own groups" in clash
    both = {"alert": "A", "record": "a:b", "expr": "up"}
    neither = {"expr": "up"}
    record_with_for = {"record": "a:b", "expr": "up", "for": "5m", "annotations": {"x": "y"}}
    assert problems([{"name": "g", "rules": [both, neither, record_with_for]}]) == [
        "extraRuleGroups[0].rules[0]: set exactly one of alert and record",
        "extraRuleGroups[0].rules[1]: set exactly one of alert and record",
        "extraRuleGroups[0].rules[2].for applies to alerting rules only",
        "extraRuleGroups[0].rules[2].annotations applies to alerting rules only",
    ]
    odd = {"record": "a-b", "expr": "  ", "labels": {"bad-name": "x"}}
    assert problems([{"name": "g", "rules": [odd]}]) == [
        "extraRuleGroups[0].rules[0].labels: 'bad-name' is not a Prometheus label name "
        "([a-zA-Z_][a-zA-Z0-9_]*, not __*)",
        "extraRuleGroups[0].rules[0].expr is blank",
        "extraRuleGroups[0].rules[0].record 'a-b' is not a metric name",
    ]
    # Durations and required fields are the schema's, so the server refuses them already.
    (duration,) = problems([{"name": "g", "rules": [{"alert": "A", "expr": "up", "for": "5 m"}]}])
    assert duration.startswith("extraRuleGroups[0].rules[0].for: String should match pattern")
    (empty,) = problems([{"name": "g", "rules": []}])
    assert empty.startswith("extraRuleGroups[0].rules: List should have at least 1 item")


def test_the_users_rules_may_not_set_the_label_the_operator_routes_by() -> None:
    """The operator labels the user's alerts with the resource, as ours: a value of the
    user's own would route them to another resource's receivers, or to none. A recorded
    series with it could feed another resource's alert: refused alike."""
    mine = {"alert": "A", "expr": "up == 0", "labels": {"jewelry_monitoring": "other"}}
    recorded = {"record": "a:b", "expr": "up", "labels": {"jewelry_monitoring": "x"}}
    groups = [{"name": "g", "rules": [recorded, mine]}]
    problems, _ = validate(
        {"app": {"podSelector": {"app": "x"}}, "extraRuleGroups": groups}, KNOWN_ALERTS
    )
    assert problems == [
        f"extraRuleGroups[0].rules[{index}].labels sets jewelry_monitoring: routing and "
        "inhibition tell this resource's alerts from others' by them (the operator sets "
        "jewelry_monitoring and namespace itself, job names the scraped targets); remove them"
        for index in (0, 1)
    ]


def undocumented(node: dict[str, Any], path: str) -> list[str]:
    """The paths under ``node`` whose schema has no description (map values and list items
    are described by the field that holds them)."""
    missing = []
    for name, child in node.get("properties", {}).items():
        where = f"{path}.{name}"
        missing += [] if child.get("description", "").strip() else [where]
        missing += undocumented(child, where)
    if "items" in node:
        missing += undocumented(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        missing += undocumented(node["additionalProperties"], f"{path}.<key>")
    return missing


def test_every_field_of_the_crd_has_a_description() -> None:
    """`kubectl explain` shows these descriptions, and the CRD reference lists them."""
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    # metadata is ObjectMeta, described by Kubernetes: a CRD may not say more of it.
    assert undocumented(schema, "jm") == ["jm.metadata"], "describe them in spec.py / status.py"
