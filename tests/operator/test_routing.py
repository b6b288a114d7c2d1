"""Alert routing and alert-to-dashboard links as the builders make them (pure, no cluster).

What prometheus-operator makes of the AlertmanagerConfig, and a real Alertmanager delivering
through it, are in tests/monitoring/test_alert_routing.py.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest

from devkit.prometheus import promql_metric_names, promql_name_patterns
from jewelry_monitoring.builders.common import Owner
from jewelry_monitoring.builders.dashboards import dashboards, shared_dashboards
from jewelry_monitoring.builders.desired import desired_objects, needed_monitoring_kinds
from jewelry_monitoring.builders.rules import KNOWN_ALERTS
from jewelry_monitoring.selection import ALERTMANAGER, evaluate
from jewelry_monitoring.spec import JewelryMonitoringSpec, secret_refs, semantic_problems

KINDS = frozenset({"ServiceMonitor", "PrometheusRule", "AlertmanagerConfig"})
GRAFANA = "https://grafana.example/base/"
ALL_EXPORTERS = {
    "postgres": {"enabled": True, "dataSource": {"name": "pg", "key": "dsn"}},
    "redis": {"enabled": True},
    "nginx": {"enabled": True},
    "celery": {"enabled": True, "brokerUrl": {"name": "broker", "key": "url"}},
}
SLOS = {"availability": {"objective": 99.9}, "latency": {"objective": 99}}


def ref(name: str, key: str) -> dict[str, str]:
    return {"name": name, "key": key}


ROUTING: dict[str, Any] = {
    "alertmanagerConfigLabels": {"alertmanagerConfig": "shop"},
    "receivers": [
        {"name": "pager", "pagerduty": {"routingKey": ref("pd", "key")}},
        {
            "name": "chat",
            "sendResolved": False,
            "slack": {"apiUrl": ref("slack", "url"), "channel": "#shop"},
            "msteams": {"webhookUrl": ref("teams", "url")},
        },
        {
            "name": "mail",
            "email": {
                "to": "ops@jewelry.example",
                "from": "alerts@jewelry.example",
                "smarthost": "smtp.jewelry.example:587",
                "authUsername": "alerts",
                "authPassword": ref("smtp", "password"),
            },
        },
        {"name": "hook", "webhook": {"url": ref("hook", "url")}},
        {"name": "void"},
    ],
    "receiver": "mail",
    "routes": [
        {"receiver": "pager", "severities": ["critical"], "continue": True},
        {
            "receiver": "chat",
            "alertNames": ["RedisDown", "SlowRequests"],
            "teams": ["checkout"],
            "repeatInterval": "1h",
        },
        {"receiver": "void", "severities": ["info"]},
    ],
}


def owner(spec: dict[str, Any], name: str = "shop", namespace: str = "jewelry") -> Owner:
    full = {"app": {"podSelector": {"app": "jewelry"}}, **spec}
    return Owner(name, namespace, "uid-1", JewelryMonitoringSpec.model_validate(full))


def alertmanager_config(spec: dict[str, Any]) -> dict[str, Any]:
    (config,) = [
        o for o in desired_objects(owner(spec), KINDS) if o["kind"] == "AlertmanagerConfig"
    ]
    return config


def alert_rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    (rule,) = [o for o in desired_objects(owner(spec), KINDS) if o["kind"] == "PrometheusRule"]
    return [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]


def test_no_routing_no_alertmanager_config_and_its_crd_is_not_needed() -> None:
    assert not [o for o in desired_objects(owner({}), KINDS) if o["kind"] == "AlertmanagerConfig"]
    assert "AlertmanagerConfig" not in needed_monitoring_kinds(owner({}).spec)
    assert "AlertmanagerConfig" in needed_monitoring_kinds(owner({"routing": ROUTING}).spec)


def test_every_alert_carries_the_resource_label_the_config_routes_by() -> None:
    rules = alert_rules({"exporters": ALL_EXPORTERS, "slos": SLOS})
    assert {r["alert"] for r in rules} == KNOWN_ALERTS
    assert {r["labels"]["jewelry_monitoring"] for r in rules} == {"shop"}
    config = alertmanager_config({"routing": ROUTING})
    assert config["spec"]["route"]["matchers"] == [
        {"name": "jewelry_monitoring", "value": "shop", "matchType": "="}
    ]
    # What an Alertmanager selects it by, besides the operator's own labels.
    assert config["metadata"]["labels"]["alertmanagerConfig"] == "shop"
    assert config["metadata"]["name"] == "shop-alert-routing"
    assert [r["uid"] for r in config["metadata"]["ownerReferences"]] == ["uid-1"]


def test_routes_match_severity_alert_name_and_team() -> None:
    route = alertmanager_config({"routing": ROUTING})["spec"]["route"]
    assert (route["receiver"], route["groupBy"]) == ("mail", ["alertname", "namespace", "job"])
    assert (route["groupWait"], route["groupInterval"], route["repeatInterval"]) == (
        "30s",
        "5m",
        "4h",
    )
    pager, chat, void = route["routes"]
    assert pager == {
        "receiver": "pager",
        "matchers": [{"name": "severity", "value": "critical", "matchType": "="}],
        "continue": True,
    }
    assert chat == {
        "receiver": "chat",
        "matchers": [
            {"name": "alertname", "value": "RedisDown|SlowRequests", "matchType": "=~"},
            {"name": "team", "value": "checkout", "matchType": "="},
        ],
        "continue": False,
        "repeatInterval": "1h",
    }
    assert void["matchers"] == [{"name": "severity", "value": "info", "matchType": "="}]


def test_several_values_make_an_escaped_regex() -> None:
    routing = {**ROUTING, "routes": [{"receiver": "chat", "teams": ["a.b", "c+d"]}]}
    (route,) = alertmanager_config({"routing": routing})["spec"]["route"]["routes"]
    (matcher,) = route["matchers"]
    assert matcher["value"] == r"a\.b|c\+d"
    assert re.fullmatch(matcher["value"], "a.b") and not re.fullmatch(matcher["value"], "axb")


def test_receivers_pass_credentials_only_as_secret_references() -> None:
    receivers = {
        r["name"]: r for r in alertmanager_config({"routing": ROUTING})["spec"]["receivers"]
    }
    assert receivers["pager"] == {
        "name": "pager",
        "pagerdutyConfigs": [{"routingKey": ref("pd", "key"), "sendResolved": True}],
    }
    assert receivers["chat"] == {
        "name": "chat",
        "slackConfigs": [
            {"apiURL": ref("slack", "url"), "channel": "#shop", "sendResolved": False}
        ],
        "msteamsv2Configs": [{"webhookURL": ref("teams", "url"), "sendResolved": False}],
    }
    assert receivers["mail"]["emailConfigs"] == [
        {
            "to": "ops@jewelry.example",
            "from": "alerts@jewelry.example",
            "smarthost": "smtp.jewelry.example:587",
            "authUsername": "alerts",
            "authPassword": ref("smtp", "password"),
            "requireTLS": True,
            "sendResolved": True,
        }
    ]
    assert receivers["hook"]["webhookConfigs"] == [
        {"urlSecret": ref("hook", "url"), "sendResolved": True}
    ]
    assert receivers["void"] == {"name": "void"}  # no integration: discards
    # The operator checks these Secret keys exist and holds the config back until they do.
    refs = secret_refs(owner({"routing": ROUTING}).spec)
    assert {(r.name, r.key) for r in refs.values()} == {
        ("pd", "key"),
        ("slack", "url"),
        ("teams", "url"),
        ("smtp", "password"),
        ("hook", "url"),
    }
    assert "routing.receivers.chat.slack.apiUrl" in refs


def test_warnings_are_inhibited_while_the_matching_critical_fires() -> None:
    (rule,) = alertmanager_config({"routing": ROUTING})["spec"]["inhibitRules"]
    ours = {"name": "jewelry_monitoring", "value": "shop", "matchType": "="}
    assert rule == {
        "sourceMatch": [ours, {"name": "severity", "value": "critical", "matchType": "="}],
        "targetMatch": [ours, {"name": "severity", "value": "warning", "matchType": "="}],
        "equal": ["alertname", "namespace", "job"],
    }
    off = {**ROUTING, "inhibition": {"enabled": False}}
    assert "inhibitRules" not in alertmanager_config({"routing": off})["spec"]


def test_routing_mistakes_prometheus_operator_would_reject_are_named() -> None:
    routing = {
        **ROUTING,
        "receivers": [*ROUTING["receivers"], {"name": "pager"}],
        "receiver": "nobody",
        "groupBy": ["alertname", "alertname"],
        "routes": [
            {"receiver": "ghost", "alertNames": ["NoSuchAlert"]},
            {"receiver": "pager", "groupBy": ["...", "job"]},
        ],
    }
    spec = owner({"routing": routing, "alerts": {"labels": {"jewelry_monitoring": "x"}}}).spec
    problems = semantic_problems(spec, KNOWN_ALERTS)
    expected = [
        "routing.receivers: 'pager' is declared twice",
        "routing.receiver 'nobody' is not one of",
        "routing.groupBy ['alertname', 'alertname'] repeats a label",
        "routing.routes[0].receiver 'ghost' is not one of",
        "routing.routes[0].alertNames names unknown alerts ['NoSuchAlert']",
        "routing.routes[1].groupBy: '...' (every label) must be its only entry",
        "alerts.labels sets jewelry_monitoring",
    ]
    for needle in expected:
        assert any(needle in p for p in problems), (needle, problems)
    assert semantic_problems(owner({"routing": ROUTING}).spec, KNOWN_ALERTS) == []


USERS_GROUPS = [
    {
        "name": "shop-business",
        "rules": [
            {"record": "shop:orders:rate5m", "expr": "sum(rate(orders_total[5m]))"},
            {
                "alert": "ShopNoOrders",
                "expr": "shop:orders:rate5m == 0",
                "labels": {"severity": "warning"},
                "annotations": {"summary": "No orders"},
            },
        ],
    }
]


def test_the_users_alerts_carry_the_resource_label_and_no_dashboard_link() -> None:
    dashboards = {"enabled": True, "grafanaUrl": GRAFANA}
    rules = alert_rules({"extraRuleGroups": USERS_GROUPS, "dashboards": dashboards})
    (mine,) = [r for r in rules if r["alert"] == "ShopNoOrders"]
    assert mine["labels"] == {
        "severity": "warning",
        "jewelry_monitoring": "shop",
        "namespace": "jewelry",
    }
    assert mine["annotations"] == {"summary": "No orders"}
    (rule,) = [
        o
        for o in desired_objects(owner({"extraRuleGroups": USERS_GROUPS}), KINDS)
        if o["kind"] == "PrometheusRule"
    ]
    (users,) = [g for g in rule["spec"]["groups"] if g["name"] == "shop-business"]
    # Recorded series stay in the resource's namespace, whatever the expression yields.
    assert users["rules"][0]["labels"] == {"namespace": "jewelry"}
    # The spec is not changed by building from it.
    assert "jewelry_monitoring" not in USERS_GROUPS[0]["rules"][1]["labels"]


def test_routes_may_match_the_users_alerts_by_name() -> None:
    routes = [{"receiver": "chat", "alertNames": ["ShopNoOrders", "RedisDown"]}]
    routing = {**ROUTING, "routes": routes}
    spec = {"routing": routing, "extraRuleGroups": USERS_GROUPS}
    assert semantic_problems(owner(spec).spec, KNOWN_ALERTS) == []
    (route,) = alertmanager_config(spec)["spec"]["route"]["routes"]
    assert route["matchers"] == [
        {"name": "alertname", "value": "ShopNoOrders|RedisDown", "matchType": "=~"}
    ]
    # A name that is neither ours nor the user's is still refused.
    (problem,) = semantic_problems(owner({"routing": routing}).spec, KNOWN_ALERTS)
    assert problem.startswith(
        "routing.routes[0].alertNames names unknown alerts ['ShopNoOrders']"
    ), problem


def test_selected_by_alertmanager_names_the_missing_label() -> None:
    config = alertmanager_config({"routing": ROUTING})
    alertmanager = {
        "metadata": {"name": "main", "namespace": "monitoring"},
        "spec": {
            "alertmanagerConfigSelector": {"matchLabels": {"alertmanagerConfig": "main"}},
            "alertmanagerConfigNamespaceSelector": {},
        },
    }
    selection = evaluate([alertmanager], [config], {}, ALERTMANAGER)
    assert (selection.status, selection.reason) == ("False", "NotSelected")
    assert "Alertmanager monitoring/main" in selection.message
    assert "add alertmanagerConfig=main to spec.routing.alertmanagerConfigLabels" in (
        selection.message
    )
    # Unset namespace selector: only the Alertmanager's own namespace.
    own_namespace_only = {
        **alertmanager,
        "spec": {"alertmanagerConfigSelector": {"matchLabels": {"alertmanagerConfig": "shop"}}},
    }
    selection = evaluate([own_namespace_only], [config], {}, ALERTMANAGER)
    assert "namespace jewelry is outside its alertmanagerConfigNamespaceSelector" in (
        selection.message
    )
    no_selector = {**alertmanager, "spec": {}}
    selection = evaluate([no_selector], [config], {}, ALERTMANAGER)
    assert "it has no alertmanagerConfigSelector" in selection.message
    selects = {
        **alertmanager,
        "spec": {**own_namespace_only["spec"], "alertmanagerConfigNamespaceSelector": {}},
    }
    selection = evaluate([no_selector, selects], [config], {}, ALERTMANAGER)
    assert (selection.status, selection.reason) == ("True", "Selected")
    assert evaluate([], [config], {}, ALERTMANAGER).reason == "NoAlertmanager"


# --- dashboard_url ------------------------------------------------------------------------


def _panels(model: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {panel["id"]: panel for panel in model["panels"]}


def _reads(panel: dict[str, Any]) -> tuple[set[str], set[str]]:
    exprs = [target["expr"] for target in panel.get("targets", [])]
    names = set().union(*(promql_metric_names(e) for e in exprs))
    patterns = set().union(*(promql_name_patterns(e) for e in exprs))
    return names, patterns


@pytest.mark.parametrize("own_dashboards", [False, True])
def test_every_alert_links_a_panel_that_reads_its_metrics(own_dashboards: bool) -> None:
    spec = {
        "exporters": ALL_EXPORTERS,
        "slos": SLOS,
        "dashboards": {"enabled": own_dashboards, "grafanaUrl": GRAFANA},
    }
    models = dashboards(owner(spec)) if own_dashboards else shared_dashboards()
    by_uid = {model["uid"]: model for model in models.values()}
    rules = alert_rules(spec)
    assert {r["alert"] for r in rules} == KNOWN_ALERTS
    for rule in rules:
        url = urllib.parse.urlsplit(rule["annotations"]["dashboard_url"])
        assert (url.scheme, url.netloc) == ("https", "grafana.example")
        prefix, uid = url.path.rsplit("/", 1)
        assert prefix == "/base/d", url  # the base URL's path is kept, without "//"
        assert uid in by_uid, (rule["alert"], uid)
        query = dict(urllib.parse.parse_qsl(url.query))
        panel = _panels(by_uid[uid]).get(int(query["viewPanel"]))
        assert panel is not None and panel["type"] != "row", (rule["alert"], query)
        # The panel explains the alert: it reads a series the alert's expression reads.
        names, patterns = _reads(panel)
        alert_names = promql_metric_names(rule["expr"])
        assert names & alert_names or any(
            re.fullmatch(p, n) for p in patterns for n in alert_names
        ), (rule["alert"], panel["title"])
        if own_dashboards:
            assert set(query) == {"viewPanel"}
        else:
            # The shared dashboards open on this resource's namespace and the alert's job.
            assert query["var-namespace"] == "jewelry"
            job_vars = {k: v for k, v in query.items() if k.startswith("var-") and "job" in k}
            assert len(job_vars) == 1 and next(iter(job_vars.values())).startswith("shop-")


def test_no_grafana_url_no_dashboard_url() -> None:
    rules = alert_rules({"exporters": ALL_EXPORTERS, "dashboards": {"enabled": True}})
    assert rules and not [r for r in rules if "dashboard_url" in r["annotations"]]


def test_dashboards_link_one_another_and_keep_their_variables() -> None:
    own = dashboards(owner({"exporters": ALL_EXPORTERS, "dashboards": {"enabled": True}}))
    for scope, models in (("jewelry:jewelry/shop", own), ("jewelry", shared_dashboards())):
        # A resource without SLOs has no SLO dashboard of its own; the chart's has one.
        slo = ["slo"] if scope == "jewelry" else []
        assert sorted(models) == ["cache", "database", "django", *slo, "system"]
        for model in models.values():
            (link,) = model["links"]
            assert link["type"] == "dashboards" and link["tags"] == [scope]
            assert link["includeVars"] and link["keepTime"]
            assert scope in model["tags"]  # so the others' link finds this one
    for model in shared_dashboards().values():
        variables = {v["name"] for v in model["templating"]["list"]}
        assert {"datasource", "namespace"} <= variables
        assert variables & {"job", "postgres_job", "redis_job", "node_job"}


def test_an_alertmanager_too_old_for_teams_is_named() -> None:
    """prometheus-operator would reject the whole config: selected, yet nothing routed."""
    config = alertmanager_config({"routing": ROUTING})  # its "chat" receiver uses Teams
    spec = {
        "alertmanagerConfigSelector": {"matchLabels": {"alertmanagerConfig": "shop"}},
        "alertmanagerConfigNamespaceSelector": {},
    }

    def with_version(version: str | None) -> dict[str, Any]:
        versioned = {**spec, "version": version} if version else spec
        return {"metadata": {"name": "main", "namespace": "monitoring"}, "spec": versioned}

    selection = evaluate([with_version("v0.27.0")], [config], {}, ALERTMANAGER)
    assert (selection.status, selection.reason) == ("False", "NotSelected")
    assert (
        "AlertmanagerConfig shop-alert-routing uses msteamsv2Configs, which needs Alertmanager"
        " >= 0.28.0 but its spec.version is v0.27.0"
    ) in selection.message
    for version in ("v0.28.1", "0.30.0", None):  # None: prometheus-operator's default
        assert evaluate([with_version(version)], [config], {}, ALERTMANAGER).status == "True"
    no_teams = {**ROUTING, "receivers": [r for r in ROUTING["receivers"] if "msteams" not in r]}
    older_ok = alertmanager_config({"routing": {**no_teams, "routes": []}})
    assert evaluate([with_version("v0.25.0")], [older_ok], {}, ALERTMANAGER).status == "True"


def test_an_empty_group_by_is_named_not_silently_inherited() -> None:
    """``groupBy: []`` reaches Alertmanager as no grouping at all, which it reads as the parent
    route's: prometheus-operator (and the operator's cleaning of empty lists) drop it."""
    routing = {**ROUTING, "groupBy": [], "routes": [{"receiver": "mail", "groupBy": []}]}
    problems = semantic_problems(owner({"routing": routing}).spec, KNOWN_ALERTS)
    assert [p.split(" is empty")[0] for p in problems] == [
        "routing.groupBy",
        "routing.routes[0].groupBy",
    ]
