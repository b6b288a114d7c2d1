"""Bad input, generated: specs valid and invalid go through validation and the builders.

Each generated spec knows which of its fields it made invalid. Validation must then name
every one of them (or, when the schema itself refuses the spec, at least one), name a field
in every message, and find nothing wrong with a spec that has no invalid field; building
never raises; and what a valid spec builds, the real API server accepts (server-side apply,
dry run, with prometheus-operator's CRDs installed).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client

from jewelry_monitoring.builders.common import Owner
from jewelry_monitoring.builders.desired import desired_objects
from jewelry_monitoring.builders.rules import KNOWN_ALERTS
from jewelry_monitoring.kube import RESOURCES
from jewelry_monitoring.spec import JewelryMonitoringSpec, duration_seconds, validate

ALL_KINDS = frozenset({"ServiceMonitor", "PrometheusRule"})
# Every message begins with (or names) a field by its path in the spec.
FIELD = re.compile(
    r"\b(app|exporters|monitorLabels|commonLabels|commonAnnotations|alerts|slos|dashboards"
    r"|networkPolicy|extraRuleGroups)(\.[^\s:]+)?"
)
SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")

GOOD_KEYS = ["app", "team", "example.com/tier", "k" * 63, "Kebab-Case_1.x"]
BAD_KEYS = ["k" * 64, "bad key", "/x", "Example.com/x", "x/", "a/b/c", "-x"]
GOOD_VALUES = ["x", "jewelry-shop", "v" * 63, "A.b_c-1", ""]
BAD_VALUES = ["v" * 64, "-x", "x-", "has space", "ü"]
GOOD_SECRET_NAMES, BAD_SECRET_NAMES = ["shop-db", "a.b"], ["Bad_Name", "x" * 254]
GOOD_SECRET_KEYS, BAD_SECRET_KEYS = ["dsn", "a.b_c-1"], ["bad key", "a/b"]


class Draw:
    """Draws field values, each good or (when the spec is meant to be faulty, now and then)
    bad, and remembers the paths of the bad ones."""

    def __init__(self, draw: Any, faulty: bool) -> None:
        self.draw = draw
        self.faulty = faulty
        self.bad: set[str] = set()

    def wrong(self) -> bool:
        return self.faulty and bool(self.draw(st.integers(0, 7)) == 0)

    def choose(self, good: list[Any], bad: list[Any]) -> tuple[Any, bool]:
        """A value, and whether it is a bad one."""
        if bad and self.wrong():
            return self.draw(st.sampled_from(bad)), True
        return self.draw(st.sampled_from(good)), False

    def pick(self, path: str, good: list[Any], bad: list[Any] | None = None) -> Any:
        value, wrong = self.choose(good, bad or [])
        if wrong:
            self.bad.add(path)
        return value

    def labels(self, path: str, at_least: int = 0) -> dict[str, str]:
        if at_least and self.wrong():
            self.bad.add(path)
            return {}
        entries: dict[str, tuple[str, bool]] = {}
        for _ in range(self.draw(st.integers(at_least, 3))):
            key, bad_key = self.choose(GOOD_KEYS, BAD_KEYS)
            value, bad_value = self.choose(GOOD_VALUES, BAD_VALUES)
            entries[key] = (value, bad_key or bad_value)  # a repeated key replaces the first
        if any(wrong for _, wrong in entries.values()):
            self.bad.add(path)
        return {key: value for key, (value, _) in entries.items()}

    def secret(self, path: str) -> dict[str, str]:
        return {
            "name": self.pick(path, GOOD_SECRET_NAMES, BAD_SECRET_NAMES),
            "key": self.pick(path, GOOD_SECRET_KEYS, BAD_SECRET_KEYS),
        }

    def timing(self, path: str) -> dict[str, str]:
        interval = self.pick(f"{path}.interval", ["15s", "1m", "5s"], ["abc", "15", "1x"])
        timeout = self.pick(f"{path}.scrapeTimeout", ["10s", "5s", "1s"], ["0.5s"])
        if (
            f"{path}.interval" not in self.bad
            and f"{path}.scrapeTimeout" not in self.bad
            and duration_seconds(timeout) > duration_seconds(interval)
        ):
            self.bad.add(f"{path}.scrapeTimeout")
        return {"interval": interval, "scrapeTimeout": timeout}


def _app(d: Draw) -> dict[str, Any]:
    app: dict[str, Any] = {
        "podSelector": d.labels("app.podSelector", at_least=1),
        "port": d.pick(
            "app.port",
            [8000, 1, 65535, "http", "metrics", "p" * 15],
            [0, 65536, "", "Http", "p" * 16, "-http", "http-", "12", "h--p"],
        ),
        "path": d.pick("app.path", ["/metrics", "/"], ["metrics"]),
        **d.timing("app"),
        "scheme": d.pick("app.scheme", ["http", "https"], ["gopher"]),
    }
    if d.draw(st.booleans()):
        app["bearerTokenSecret"] = d.secret("app.bearerTokenSecret")
    if d.wrong():
        d.bad.add("app.basicAuth")
        app["basicAuth"] = {"username": d.secret("x"), "password": d.secret("y")}
        app["bearerTokenSecret"] = {"name": "t", "key": "t"}
    if app["scheme"] == "https" and d.draw(st.booleans()):
        app["tls"] = {"serverName": "shop.example.com"}
    return app


def _resources(d: Draw, path: str) -> dict[str, Any]:
    requests = {"cpu": "10m", "memory": "32Mi"}
    limits = {"cpu": "200m", "memory": "128Mi", "ephemeral-storage": "1Gi"}
    if d.wrong():
        d.bad.add(path)
        requests = d.draw(
            st.sampled_from([{"cpu": "half"}, {"cpu": "-1"}, {"gpu": "1"}, {"cpu": "1"}])
        )
    return {"requests": requests, "limits": limits}


def _network_target(d: Draw, path: str) -> dict[str, Any]:
    target: dict[str, Any] = {"podSelector": d.labels(f"{path}.podSelector")}
    if d.draw(st.booleans()):
        target["namespace"] = d.pick(f"{path}.namespace", ["other"], ["Bad_NS", "n" * 64])
    if d.draw(st.booleans()):
        target["cidrs"] = [
            d.pick(f"{path}.cidrs", ["10.0.0.0/8", "fd00::/8"], ["10.0.0.1/8", "300.0.0.0/8"])
        ]
    if d.draw(st.booleans()):
        target["ports"] = [d.pick(f"{path}.ports", [5432, 6379], [0, 70000])]
    return target


# Per exporter: its connection settings, good and bad, by field name.
CONNECTIONS: dict[str, dict[str, tuple[list[Any], list[Any]]]] = {
    "redis": {
        "address": (
            [
                "redis://redis:6379",
                "redis:6379",
                "rediss://10.0.0.5",
                "cache.other.svc",
                "redis://[fd00::1]:7000",
                "cache.example.com:6380",
            ],
            ["http://redis:6379", "redis://redis:99999", "redis://:6379", ""],
        )
    },
    "nginx": {
        "scrapeUri": (
            ["http://nginx:8080/stub_status", "https://web.example.com/status"],
            ["ftp://nginx/status", "http://:80/status"],
        )
    },
}
REQUIRED_SECRET = {"postgres": "dataSource", "celery": "brokerUrl"}


def _exporter(d: Draw, name: str) -> dict[str, Any]:
    path = f"exporters.{name}"
    if not d.draw(st.booleans()):
        return {"enabled": False}
    exporter: dict[str, Any] = {"enabled": True, **d.timing(path)}
    for field, (good, bad) in CONNECTIONS.get(name, {}).items():
        exporter[field] = d.pick(f"{path}.{field}", good, bad)
    if name in REQUIRED_SECRET:
        field = REQUIRED_SECRET[name]
        if d.wrong():
            d.bad.add(f"{path}.{field}")
        else:
            exporter[field] = d.secret(f"{path}.{field}")
    if name == "postgres" and d.draw(st.booleans()):
        exporter["image"] = d.pick(
            f"{path}.image",
            ["quay.io/prometheuscommunity/postgres-exporter:v0.16.0"],
            ["evil.example.com/exporter:1", ""],
        )
    if d.draw(st.booleans()):
        exporter["resources"] = _resources(d, f"{path}.resources")
    exporter["nodeSelector"] = d.labels(f"{path}.nodeSelector")
    if d.draw(st.booleans()):
        exporter["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
        exporter["extraArgs"] = ["--log.level=debug"]
    if d.draw(st.booleans()):
        exporter["networkTarget"] = _network_target(d, f"{path}.networkTarget")
    return exporter


def _alerts(d: Draw) -> dict[str, Any]:
    label = d.pick("alerts.labels", ["team", "_x"], ["bad-label", "__x", "1a"])
    alerts: dict[str, Any] = {
        "labels": {label: "jewelry"},
        "minRequestRate": d.pick("alerts.minRequestRate", [0.1, 0], [-1]),
    }
    override: dict[str, Any] = {"threshold": 0.2, "for": "5m", "severity": "critical"}
    if d.draw(st.booleans()):
        key = d.pick("alerts.overrides.HighErrorRate.labels", ["owner"], ["bad-label"])
        override["labels"] = {key: "me"}
    name = d.pick("alerts.overrides", ["HighErrorRate"], ["NoSuchAlert"])
    if name == "NoSuchAlert":
        d.bad.discard("alerts.overrides.HighErrorRate.labels")
    alerts["overrides"] = {name: override}
    return alerts


def _rule_groups(d: Draw) -> list[dict[str, Any]]:
    groups = []
    for index in range(d.draw(st.integers(0, 2))):
        where = f"extraRuleGroups[{index}]"
        alert = {
            "alert": "ShopQuiet",
            "expr": d.pick(f"{where}.rules[0].expr", ["rate(x[5m]) == 0"], [" "]),
            "for": d.pick(f"{where}.rules[0].for", ["5m", "1h30m"], ["5 minutes", ""]),
            "labels": {d.pick(f"{where}.rules[0].labels", ["severity"], ["bad-label"]): "page"},
            "annotations": {"summary": "the shop is quiet"},
        }
        record = {
            "record": d.pick(f"{where}.rules[1].record", ["shop:x:rate5m"], ["shop-x"]),
            "expr": "sum(rate(x[5m]))",
        }
        if d.wrong():
            d.bad.add(f"{where}.rules[1]")
            record["alert"] = "Both"
        name = d.pick(f"{where}.name", [f"shop-{index}"], ["jewelry.mine", "shop-0" * index])
        groups.append({"name": name or "shop-0", "rules": [alert, record]})
    return groups


@st.composite
def specs(draw: Any) -> tuple[dict[str, Any], set[str]]:
    """A spec and the paths of the fields it made invalid (none when not ``faulty``)."""
    d = Draw(draw, faulty=draw(st.booleans()))
    spec: dict[str, Any] = {
        "app": _app(d),
        "monitorLabels": d.labels("monitorLabels"),
        "commonLabels": d.labels("commonLabels"),
        "commonAnnotations": {
            d.pick("commonAnnotations", ["note", "example.com/owner"], ["bad key"]): "x"
        },
        "exporters": {
            name: _exporter(d, name) for name in ("postgres", "redis", "nginx", "celery")
        },
        "alerts": _alerts(d),
        "slos": {
            "availability": {"objective": d.pick("slos.availability", [99.9, 95], [40, 100])},
            "latency": {
                "objective": 99,
                "thresholdSeconds": d.pick("slos.latency.thresholdSeconds", [0.5, 1], [0.3]),
            },
        },
        "dashboards": {
            "enabled": draw(st.booleans()),
            "labels": d.labels("dashboards.labels"),
            "folderAnnotation": d.pick(
                "dashboards.folderAnnotation", ["grafana_folder", "example.com/folder"], ["bad key"]
            ),
        },
        "networkPolicy": {
            "enabled": draw(st.booleans()),
            "prometheus": {"podSelector": d.labels("networkPolicy.prometheus", at_least=1)},
        },
    }
    spec["extraRuleGroups"] = _rule_groups(d)
    if d.wrong():
        d.bad.add("commonLabels")
        spec["commonLabels"]["app.kubernetes.io/instance"] = "mine"
    if d.wrong():
        d.bad.add("commonAnnotations")
        spec["commonAnnotations"]["big"] = "x" * 300_000
    return spec, d.bad


def names(problem: str) -> set[str]:
    return {found.group(0) for found in FIELD.finditer(problem)}


def check_validation(raw: dict[str, Any], bad: set[str]) -> JewelryMonitoringSpec | None:
    """Validate as the operator does; assert the messages name the bad fields, and only when
    there are some. Returns the spec if it is valid."""
    problems, spec = validate(raw, KNOWN_ALERTS)
    for problem in problems:
        assert names(problem), f"names no field: {problem}"
    if not bad:
        assert problems == [], f"a valid spec was refused: {problems}"
        assert spec is not None
        return spec
    assert problems, f"invalid fields {sorted(bad)} went unnoticed"
    named = {path for path in bad if any(path in problem for problem in problems)}
    if spec is not None:  # the schema passed: every semantic problem must be found
        assert named == bad, f"not named: {sorted(bad - named)} in {problems}"
    else:
        assert named, f"none of {sorted(bad)} is named in {problems}"
    return None


def build(spec: JewelryMonitoringSpec, name: str, namespace: str) -> list[dict[str, Any]]:
    objects = desired_objects(Owner(name, namespace, "0000-uid", spec), ALL_KINDS)
    for obj in objects:
        meta = obj["metadata"]
        assert len(meta["name"]) <= 63 and SERVICE_NAME.fullmatch(meta["name"]), meta["name"]
        assert all(len(value) <= 63 for value in meta["labels"].values()), meta["labels"]
    return objects


CR_NAMES = st.sampled_from(["shop", "s" * 63, "s" * 64, "1shop.eu", "a." * 125 + "end"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(example=specs(), name=CR_NAMES)
def test_validation_names_every_bad_field_and_builders_never_fail(
    example: tuple[dict[str, Any], set[str]], name: str
) -> None:
    raw, bad = example
    spec = check_validation(raw, bad)
    if spec is not None:
        assert build(spec, name, "jewelry")


def test_the_generator_makes_both_kinds() -> None:
    """A property over only valid (or only invalid) specs would prove half of what it says."""
    seen = {"valid": 0, "invalid": 0}

    @settings(max_examples=100)
    @given(example=specs())
    def count(example: tuple[dict[str, Any], set[str]]) -> None:
        seen["invalid" if example[1] else "valid"] += 1

    count()
    assert seen["valid"] >= 20 and seen["invalid"] >= 20, seen


# --- The real API server -----------------------------------------------------------------


@pytest.fixture(scope="module")
def dry_run_namespace(
    admin_api: client.ApiClient, jewelry_crd: list[str], prometheus_operator_crd_names: list[str]
) -> Iterator[str]:
    name = f"fuzz-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(admin_api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    core.delete_namespace(name)


def dry_run_apply(api: client.ApiClient, obj: dict[str, Any]) -> None:
    """Server-side apply of ``obj`` with dryRun=All: validated and admitted, never stored."""
    meta = obj["metadata"]
    api.call_api(
        RESOURCES[obj["kind"]].path(meta["namespace"], meta["name"]),
        "PATCH",
        query_params=[("dryRun", "All"), ("fieldManager", "fuzz"), ("force", "true")],
        header_params={
            "Content-Type": "application/apply-patch+yaml",
            "Accept": "application/json",
        },
        body=obj,
        response_type="object",
        auth_settings=["BearerToken"],
        _return_http_data_only=True,
    )


@pytest.mark.cluster
def test_what_valid_specs_build_the_api_server_accepts(
    admin_api: client.ApiClient, dry_run_namespace: str
) -> None:
    applied = {"specs": 0, "objects": 0}

    @settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
    @given(example=specs().filter(lambda example: not example[1]), name=CR_NAMES)
    def accepted(example: tuple[dict[str, Any], set[str]], name: str) -> None:
        spec = check_validation(*example)
        assert spec is not None
        for obj in build(spec, name, dry_run_namespace):
            dry_run_apply(admin_api, obj)
            applied["objects"] += 1
        applied["specs"] += 1

    accepted()
    print(f"dry-run applied {applied['objects']} objects of {applied['specs']} valid specs")
    assert applied["specs"] >= 20


@pytest.mark.cluster
def test_a_resource_with_nothing_to_alert_on_builds_what_the_server_accepts(
    admin_api: client.ApiClient, dry_run_namespace: str
) -> None:
    """No app, no exporter: a PrometheusRule with no groups, whose ``spec`` is still required
    (the generator above always enables the app, so it cannot draw this spec)."""
    spec = check_validation({"app": {"podSelector": {"app": "x"}, "enabled": False}}, set())
    assert spec is not None
    for obj in build(spec, "quiet", dry_run_namespace):
        dry_run_apply(admin_api, obj)
