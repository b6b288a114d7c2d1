"""The typed spec, its semantic checks, and the CRD generated from it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from jewelry_monitoring.builders.common import Owner, standard_labels
from jewelry_monitoring.builders.rules import KNOWN_ALERTS
from jewelry_monitoring.crd import build_crd
from jewelry_monitoring.spec import (
    LATENCY_BUCKETS,
    OPERATOR_LABELS,
    JewelryMonitoringSpec,
    duration_seconds,
    name_problems,
    quantity_value,
    secret_refs,
    semantic_problems,
)

CRD_FILE = (
    Path(__file__).resolve().parents[2]
    / "charts/jewelry-monitoring/crds/monitoring.jewelry.io_jewelrymonitorings.yaml"
)


def parse(spec: dict[str, object]) -> JewelryMonitoringSpec:
    return JewelryMonitoringSpec.model_validate({"app": {"podSelector": {"app": "x"}}, **spec})


def test_committed_crd_is_the_generated_one() -> None:
    committed = yaml.safe_load(CRD_FILE.read_text())
    assert committed == build_crd(), (
        "the CRD in the chart is stale: regenerate it with "
        "`.venv/bin/jewelry-monitoring crd > "
        + str(CRD_FILE.relative_to(CRD_FILE.parents[3]))
        + "`"
    )


def test_defaults_follow_the_design_document() -> None:
    spec = parse({})
    assert (spec.app.path, spec.app.interval, spec.app.port) == ("/metrics", "15s", 8000)
    assert spec.exporters.postgres.interval == "30s"
    assert not spec.exporters.enabled()
    assert spec.dashboards.labels == {"grafana_dashboard": "1"}


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
        "commonLabels sets app.kubernetes.io/instance: the operator sets these labels itself "
        "to find and select its objects; remove them",
        "monitorLabels sets monitoring.jewelry.io/owner: the operator sets these labels "
        "itself to find and select its objects; remove them",
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


def test_names_longer_than_a_label_value_are_refused() -> None:
    assert name_problems("a" * 63) == []
    (problem,) = name_problems("a" * 64)
    assert "metadata.name is 64 characters long; at most 63" in problem
