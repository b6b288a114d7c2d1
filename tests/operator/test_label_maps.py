"""Every string map of the spec is checked as what it holds, and no map lets one tenant's
resource speak for another's: one rule, found by walking the model itself.

The model's string-to-string fields are enumerated by introspecting the pydantic classes, so
that a new field without a kind, or one the validation does not reach, fails here.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from devkit.prometheus import run_promtool
from jewelry_monitoring.builders.common import Owner
from jewelry_monitoring.builders.rules import KNOWN_ALERTS, rule_groups
from jewelry_monitoring.spec import JewelryMonitoringSpec, validate
from jewelry_monitoring.validation import MapKind, map_kind, string_maps

SECRET = {"name": "s", "key": "k"}
EXPORTER = {
    "enabled": True,
    "resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "1"}},
    "nodeSelector": {"pool": "monitoring"},
    "networkTarget": {"podSelector": {"app": "db"}},
}
# A spec that sets every section holding a string map.
FULL: dict[str, Any] = {
    "app": {"podSelector": {"app": "shop"}},
    "monitorLabels": {"release": "kps"},
    "commonLabels": {"team": "gems"},
    "commonAnnotations": {"note": "x"},
    "exporters": {
        "postgres": {**EXPORTER, "dataSource": SECRET},
        "redis": EXPORTER,
        "nginx": EXPORTER,
        "celery": {**EXPORTER, "brokerUrl": SECRET},
    },
    "alerts": {"labels": {"team": "gems"}, "overrides": {"HighErrorRate": {"labels": {"a": "b"}}}},
    "dashboards": {"labels": {"grafana_dashboard": "1"}, "annotations": {"note": "x"}},
    "networkPolicy": {
        "prometheus": {"podSelector": {"app": "prom"}, "namespaceSelector": {"x": "y"}},
        "dns": {"podSelector": {"k8s-app": "kube-dns"}, "namespaceSelector": {"x": "y"}},
    },
    "extraRuleGroups": [
        {
            "name": "mine",
            "rules": [
                {
                    "alert": "Mine",
                    "expr": "up == 0",
                    "labels": {"team": "gems"},
                    "annotations": {"summary": "x"},
                }
            ],
        }
    ],
    "routing": {
        "alertmanagerConfigLabels": {"alertmanager": "main"},
        "receivers": [{"name": "hook", "webhook": {"url": SECRET}}],
        "receiver": "hook",
    },
}

# A key each kind refuses for its syntax, and one it reserves.
BAD_KEY = {
    MapKind.OBJECT_LABELS: "bad key",
    MapKind.SELECTOR: "bad key",
    MapKind.ANNOTATIONS: "bad key",
    MapKind.ALERT_LABELS: "bad-label",
    MapKind.RULE_ANNOTATIONS: "bad-label",
    MapKind.QUANTITIES: "gpu",
}
RESERVED = {
    MapKind.OBJECT_LABELS: ["app.kubernetes.io/managed-by", "monitoring.jewelry.io/owner"],
    MapKind.ALERT_LABELS: ["namespace", "job", "jewelry_monitoring", "alertname"],
}


def _unwrapped(annotation: Any) -> Any:
    """``X`` of ``Annotated[X, ...]`` and of ``X | None``."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _unwrapped(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrapped(options[0]) if len(options) == 1 else annotation
    return annotation


def _models(annotation: Any) -> set[type[BaseModel]]:
    """The model classes an annotation names, however nested in lists, maps and unions."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found = {annotation}
        for field in annotation.model_fields.values():
            found |= _models(field.annotation)
        return found
    return {m for arg in typing.get_args(annotation) for m in _models(arg)}


def string_map_fields() -> set[tuple[str, str]]:
    """(class, field) of every ``dict[str, str]`` field of the model, found by introspection."""
    return {
        (model.__name__, name)
        for model in _models(JewelryMonitoringSpec)
        for name, field in model.model_fields.items()
        if _unwrapped(field.annotation) == dict[str, str]
    }


def _visited(model: BaseModel) -> set[tuple[str, str]]:
    """(class, field) of the string maps set in an instance, walking it as a user's spec."""
    found = set()
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if map_kind(field) is not None and value is not None:
            found.add((type(model).__name__, name))
        if isinstance(value, list):
            children = list(value)
        elif isinstance(value, dict):
            children = list(value.values())
        else:
            children = [value]
        for child in children:
            if isinstance(child, BaseModel):
                found |= _visited(child)
    return found


def test_the_model_has_string_maps_and_each_declares_its_kind() -> None:
    fields = string_map_fields()
    assert ("RoutingSpec", "alertmanager_config_labels") in fields
    assert len(fields) >= 20, sorted(fields)
    models = {model.__name__: model for model in _models(JewelryMonitoringSpec)}
    without_kind = sorted(
        (model, name)
        for model, name in fields
        if map_kind(models[model].model_fields[name]) is None
    )
    assert without_kind == [], "give these a MapKind (spec.py's ObjectLabels and friends)"


def test_the_full_spec_is_valid_and_sets_every_string_map() -> None:
    problems, spec = validate(FULL, KNOWN_ALERTS)
    assert problems == []
    assert spec is not None
    assert _visited(spec) == string_map_fields()


def _path(raw: dict[str, Any], where: str) -> dict[str, str]:
    """The map at ``where`` (``a.b[0].c``) in a raw spec."""
    node: Any = raw
    for key, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", where):
        node = node[int(index)] if index else node[key]
    assert isinstance(node, dict)
    return node


def _full_spec() -> JewelryMonitoringSpec:
    return JewelryMonitoringSpec.model_validate(FULL)


@pytest.mark.parametrize(
    ("where", "kind"), [(where, kind) for where, kind, _ in string_maps(_full_spec())]
)
def test_every_string_map_is_validated_as_its_kind(where: str, kind: MapKind) -> None:
    """A key of the wrong syntax, and each key the operator reserves, is refused by name."""
    for key in [BAD_KEY[kind], *RESERVED.get(kind, [])]:
        raw = yaml.safe_load(yaml.safe_dump(FULL))
        _path(raw, where)[key] = "1"
        problems, _ = validate(raw, KNOWN_ALERTS)
        named = [p for p in problems if p.startswith(f"{where}") and key in p]
        assert named, f"{where}: {key!r} went through ({problems})"


def test_alertmanager_config_labels_may_not_take_the_objects_out_of_the_operators_watch() -> None:
    """The AlertmanagerConfig is found by these labels: with another managed-by it would
    be an orphan that pages on after routing is removed."""
    raw = {
        **FULL,
        "routing": {
            **FULL["routing"],
            "alertmanagerConfigLabels": {"app.kubernetes.io/managed-by": "me", "bad key": "x"},
        },
    }
    problems, _ = validate(raw, KNOWN_ALERTS)
    assert [p for p in problems if p.startswith("routing.alertmanagerConfigLabels")] == [
        "routing.alertmanagerConfigLabels: key 'bad key': the name must be 1-63 letters, "
        "digits, '-', '_' or '.', beginning and ending with a letter or digit",
        "routing.alertmanagerConfigLabels sets app.kubernetes.io/managed-by: the operator sets "
        "these labels itself to find and select its objects; remove them",
    ]


# --- One tenant may not speak for another -------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        {"alerts": {"labels": {"namespace": "team-a"}}},
        {"alerts": {"overrides": {"HighErrorRate": {"labels": {"job": "shop-app-metrics"}}}}},
        {
            "extraRuleGroups": [
                {"name": "g", "rules": [{"alert": "A", "expr": "up", "labels": {"namespace": "a"}}]}
            ]
        },
        {
            "extraRuleGroups": [
                {"name": "g", "rules": [{"record": "a:b", "expr": "up", "labels": {"job": "a"}}]}
            ]
        },
    ],
    ids=["alerts.labels", "override labels", "alert rule labels", "recording rule labels"],
)
def test_labels_that_route_or_inhibit_are_refused_in_every_rule_label_map(
    raw: dict[str, Any],
) -> None:
    problems, _ = validate({"app": {"podSelector": {"app": "x"}}, **raw}, KNOWN_ALERTS)
    assert len(problems) == 1, problems
    assert "routing and inhibition tell this resource's alerts from others'" in problems[0]


def test_team_stays_the_users_label() -> None:
    """Routes match ``team`` by design: it tells teams apart within one resource's alerts."""
    raw = {
        "app": {"podSelector": {"app": "x"}},
        "alerts": {"labels": {"team": "gems"}},
        "extraRuleGroups": [
            {"name": "g", "rules": [{"alert": "A", "expr": "up", "labels": {"team": "ops"}}]}
        ],
    }
    assert validate(raw, KNOWN_ALERTS)[0] == []


FORGED = 'label_replace(vector(1), "namespace", "team-a", "", "")'


def test_users_rules_carry_their_resources_namespace_whatever_the_expression_says(
    tmp_path: Path,
) -> None:
    """A label map cannot forge a namespace any more, but PromQL can: the operator sets the
    label on every user rule, and Prometheus (promtool here) gives the rule's label the last
    word, so the alert and the recorded series stay in team-b."""
    spec = JewelryMonitoringSpec.model_validate(
        {
            "app": {"podSelector": {"app": "x"}},
            "extraRuleGroups": [
                {
                    "name": "forge",
                    "rules": [
                        {"alert": "Forged", "expr": FORGED},
                        {"record": "forged:series", "expr": FORGED},
                    ],
                }
            ],
        }
    )
    owner = Owner(name="shop", namespace="team-b", uid="u", spec=spec)
    (users,) = [group for group in rule_groups(owner) if group["name"] == "forge"]
    assert [rule["labels"]["namespace"] for rule in users["rules"]] == ["team-b", "team-b"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": [users]}))
    (tmp_path / "test.yaml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["rules.yaml"],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [],
                        "alert_rule_test": [
                            {
                                "eval_time": "1m",
                                "alertname": "Forged",
                                "exp_alerts": [
                                    {
                                        "exp_labels": {
                                            "namespace": "team-b",
                                            "jewelry_monitoring": "shop",
                                        }
                                    }
                                ],
                            }
                        ],
                        "promql_expr_test": [
                            {
                                "expr": "forged:series",
                                "eval_time": "1m",
                                "exp_samples": [
                                    {"labels": 'forged:series{namespace="team-b"}', "value": 1}
                                ],
                            }
                        ],
                    }
                ],
            }
        )
    )
    result = run_promtool("test", "rules", "test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
