"""Unit tests of the rules builder: a spec in, the exact PrometheusRule groups out."""

from __future__ import annotations

import re
from typing import Any

import pytest
from prometheus_client.utils import floatToGoString

from jewelry_monitoring.builders.common import Owner
from jewelry_monitoring.builders.rules import (
    CATALOG,
    KNOWN_ALERTS,
    SAMPLE_LIMIT_ALERT,
    burn_windows,
    error_budget,
    format_duration,
    le_matcher,
    rule_groups,
    slo_windows,
)
from jewelry_monitoring.spec import (
    DEFAULT_RUNBOOK_URL_BASE,
    EXPORTER_NAMES,
    JewelryMonitoringSpec,
    duration_seconds,
    semantic_problems,
)

ALL_EXPORTERS = {
    "postgres": {"enabled": True, "dataSource": {"name": "pg", "key": "dsn"}},
    "redis": {"enabled": True},
    "nginx": {"enabled": True},
    "celery": {"enabled": True, "brokerUrl": {"name": "broker", "key": "url"}},
}
SLOS = {"availability": {"objective": 99.9}, "latency": {"objective": 99, "thresholdSeconds": 0.5}}


def owner(spec: dict[str, Any] | None = None, name: str = "shop") -> Owner:
    return Owner(
        name=name,
        namespace="jewelry",
        uid="uid-1",
        spec=JewelryMonitoringSpec.model_validate(
            {"app": {"podSelector": {"app": "jewelry"}}, **(spec or {})}
        ),
    )


def alerts(groups: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for group in groups:
        for rule in group["rules"]:
            if "alert" in rule:
                found.setdefault(rule["alert"], []).append(rule)
    return found


def records(groups: list[dict[str, Any]]) -> list[str]:
    return [rule["record"] for group in groups for rule in group["rules"] if "record" in rule]


def only(groups: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [rule] = alerts(groups)[name]
    return rule


def test_high_error_rate_reads_like_a_handwritten_rule() -> None:
    selector = 'namespace="jewelry",job="shop-app-metrics"'
    assert only(rule_groups(owner()), "HighErrorRate") == {
        "alert": "HighErrorRate",
        "expr": f"job:django_http_responses_5xx:ratio_rate5m{{{selector}}} > 0.05\nand\n"
        f"job:django_http_responses:rate5m{{{selector}}} > 0.1",
        "for": "5m",
        # The resource's name: its AlertmanagerConfig routes by it.
        "labels": {"severity": "critical", "jewelry_monitoring": "shop"},
        "annotations": {
            "summary": "High share of 5xx responses",
            "description": "More than 0.05 of the responses of {{ $labels.job }} in "
            "{{ $labels.namespace }} are server errors (5xx) over the last 5 minutes, at more "
            "than 0.1 responses per second.",
            "runbook_url": f"{DEFAULT_RUNBOOK_URL_BASE}/higherrorrate",
        },
    }


def test_high_error_rate_request_floor_is_configurable() -> None:
    rule = only(rule_groups(owner({"alerts": {"minRequestRate": 2.5}})), "HighErrorRate")
    assert rule["expr"].endswith(
        'job:django_http_responses:rate5m{namespace="jewelry",job="shop-app-metrics"} > 2.5'
    )
    assert "more than 2.5 responses per second" in rule["annotations"]["description"]
    unfloored = only(rule_groups(owner({"alerts": {"minRequestRate": 0}})), "HighErrorRate")
    assert unfloored["expr"].endswith("> 0")


def test_django_target_down_warns_on_a_fraction_and_pages_only_when_all_are_down() -> None:
    selector = 'namespace="jewelry",job="shop-app-metrics"'
    some, every = alerts(rule_groups(owner()))["DjangoTargetDown"]
    assert (some["labels"], every["labels"]) == (
        {"severity": "warning", "targets": "some", "jewelry_monitoring": "shop"},
        {"severity": "critical", "targets": "all", "jewelry_monitoring": "shop"},
    )
    assert some["expr"] == (
        f"(\n  count by (cluster, namespace, job) (up{{{selector}}} == 0)\n  /\n"
        f"  count by (cluster, namespace, job) (up{{{selector}}})\n) > 0.1"
    )
    assert every["expr"] == (
        f"sum by (cluster, namespace, job) (up{{{selector}}}) == 0 or absent(up{{{selector}}})"
    )
    # The fraction is the overridable threshold; "all of them" is not a matter of degree.
    spec = {"alerts": {"overrides": {"DjangoTargetDown": {"threshold": 0.5}}}}
    some_50, every_again = alerts(rule_groups(owner(spec)))["DjangoTargetDown"]
    assert some_50["expr"].endswith(") > 0.5")
    assert every_again == every


def test_the_5xx_ratio_it_reads_is_recorded_from_the_real_status_counter() -> None:
    [rule] = [
        r
        for g in rule_groups(owner())
        for r in g["rules"]
        if r.get("record") == "job:django_http_responses_5xx:ratio_rate5m"
    ]
    selector = 'namespace="jewelry",job="shop-app-metrics"'
    total = (
        "sum by (cluster, namespace, job) (rate(django_http_responses_total_by_status_total"
        f"{{{selector}}}[5m]))"
    )
    assert rule["expr"] == (
        "(sum by (cluster, namespace, job) (rate(django_http_responses_total_by_status_total"
        f'{{{selector},status=~"5.."}}[5m]))\nor\n{total} * 0)\n/\n{total}'
    )


def test_postgres_connection_alert_is_scoped_to_the_exporter_job() -> None:
    rule = only(rule_groups(owner({"exporters": ALL_EXPORTERS})), "PostgresTooManyConnections")
    selector = 'namespace="jewelry",job="shop-postgres-exporter"'
    assert rule["expr"] == (
        "sum by (cluster, namespace, job, instance) "
        f"(pg_stat_database_numbackends{{{selector}}})\n/\n"
        "max by (cluster, namespace, job, instance) "
        f"(pg_settings_max_connections{{{selector}}})\n> 0.8"
    )


def test_overrides_change_threshold_for_severity_and_labels() -> None:
    spec = {
        "alerts": {
            "labels": {"team": "shop"},
            "overrides": {
                "SlowRequests": {
                    "threshold": 1.5,
                    "for": "10m",
                    "severity": "critical",
                    "labels": {"team": "checkout", "page": "yes"},
                }
            },
        }
    }
    rule = only(rule_groups(owner(spec)), "SlowRequests")
    assert rule["expr"].endswith("} > 1.5")
    assert "above 1.5s" in rule["annotations"]["description"]
    assert rule["for"] == "10m"
    # Override labels win over alerts.labels.
    assert rule["labels"] == {
        "severity": "critical",
        "team": "checkout",
        "page": "yes",
        "jewelry_monitoring": "shop",
    }


def test_extra_labels_cannot_replace_severity() -> None:
    spec = {
        "alerts": {
            "labels": {"severity": "info"},
            "overrides": {"HighErrorRate": {"labels": {"severity": "info"}}},
        }
    }
    assert only(rule_groups(owner(spec)), "HighErrorRate")["labels"] == {
        "severity": "critical",
        "jewelry_monitoring": "shop",
    }


def test_alerts_labels_go_on_every_alert() -> None:
    groups = rule_groups(owner({"alerts": {"labels": {"team": "shop"}}, "slos": SLOS}))
    for rules in alerts(groups).values():
        for rule in rules:
            assert rule["labels"]["team"] == "shop"
            assert rule["labels"]["severity"] in {"critical", "warning", "info"}
            assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}


def test_runbook_url_is_base_plus_lowercase_name() -> None:
    spec = {"alerts": {"runbookUrlBase": "https://wiki.example/runbooks/"}}
    rule = only(rule_groups(owner(spec)), "DjangoUnappliedMigrations")
    assert (
        rule["annotations"]["runbook_url"]
        == "https://wiki.example/runbooks/djangounappliedmigrations"
    )


def test_disabled_override_drops_only_that_alert() -> None:
    spec = {"alerts": {"overrides": {"SlowRequests": {"disabled": True}}}}
    names = set(alerts(rule_groups(owner(spec))))
    assert "SlowRequests" not in names
    assert "HighErrorRate" in names


def test_threshold_override_is_ignored_by_alerts_without_threshold() -> None:
    spec = {"alerts": {"overrides": {"PostgresDown": {"threshold": 3}}}}
    with_override = owner({**spec, "exporters": ALL_EXPORTERS})
    assert only(rule_groups(with_override), "PostgresDown") == only(
        rule_groups(owner({"exporters": ALL_EXPORTERS})), "PostgresDown"
    )


def test_disabled_exporters_have_no_alerts() -> None:
    components = {alert.name: alert.component for alert in CATALOG}
    # The cardinality guard watches every component's targets at once.
    guard = {SAMPLE_LIMIT_ALERT.name}
    names = set(alerts(rule_groups(owner()))) - guard
    assert names == {name for name, component in components.items() if component == "app"}
    for exporter in EXPORTER_NAMES:
        spec = {"exporters": {exporter: ALL_EXPORTERS[exporter]}}
        names = set(alerts(rule_groups(owner(spec)))) - guard
        assert {n for n in names if components[n] != "app"} == {
            name for name, component in components.items() if component == exporter
        }


def test_every_exporter_has_a_down_alert_and_one_more() -> None:
    for exporter in EXPORTER_NAMES:
        own = [alert for alert in CATALOG if alert.component == exporter]
        assert any(alert.name.endswith("ExporterDown") for alert in own), exporter
        assert len(own) >= 2, exporter


def test_alerts_disabled_keeps_recording_rules() -> None:
    enabled = rule_groups(owner({"exporters": ALL_EXPORTERS, "slos": SLOS}))
    disabled = rule_groups(
        owner({"exporters": ALL_EXPORTERS, "slos": SLOS, "alerts": {"enabled": False}})
    )
    assert alerts(disabled) == {}
    assert records(disabled) == records(enabled)
    assert len(records(disabled)) > 10


def test_app_disabled_drops_app_rules_and_slos() -> None:
    groups = rule_groups(owner({"app": {"podSelector": {"a": "b"}, "enabled": False}}))
    assert groups == []


def test_group_names_are_unique_and_name_the_cr() -> None:
    groups = rule_groups(owner({"exporters": ALL_EXPORTERS, "slos": SLOS}))
    names = [group["name"] for group in groups]
    assert len(names) == len(set(names))
    assert all(name.startswith("jewelry.jewelry.shop.") for name in names)


def test_every_selector_is_scoped_to_this_cr() -> None:
    """Every vector selector carries this CR's namespace and one of its jobs."""
    groups = rule_groups(owner({"exporters": ALL_EXPORTERS, "slos": SLOS}))
    jobs = {"shop-app-metrics", *(f"shop-{e}-exporter" for e in EXPORTER_NAMES)}
    exprs = [rule["expr"] for group in groups for rule in group["rules"]]
    selectors = [m for expr in exprs for m in re.findall(r"[a-zA-Z_:][\w:]*\{([^}]*)\}", expr)]
    assert len(selectors) > 50
    for matchers in selectors:
        assert matchers.startswith('namespace="jewelry",job='), matchers
        # One job, or (the cardinality guard's alert) several of them.
        assert set(matchers.split('"')[3].split("|")) <= jobs, matchers


def test_two_crs_never_see_each_others_series() -> None:
    mine = str(rule_groups(owner(name="shop")))
    theirs = str(rule_groups(owner(name="outlet")))
    assert "shop-app-metrics" in mine and "outlet-app-metrics" not in mine
    assert "outlet-app-metrics" in theirs and "shop-app-metrics" not in theirs


def test_known_alerts_lists_catalog_and_slo_alerts_once() -> None:
    # Rows sharing a name are one alert with several rules: their labels tell them apart.
    rows = [(alert.name, alert.labels) for alert in CATALOG]
    assert len(rows) == len(set(rows))
    names = [alert.name for alert in CATALOG]
    assert [name for name in set(names) if names.count(name) > 1] == ["DjangoTargetDown"]
    slo_and_guard = {"JewelryAvailabilityBudgetBurn", "JewelryLatencyBudgetBurn"}
    slo_and_guard.add("TargetNearSampleLimit")
    assert frozenset(names) | slo_and_guard == KNOWN_ALERTS
    for required in [
        "HighErrorRate",
        "SlowRequests",
        "DjangoDatabaseErrors",
        "DjangoSlowDatabaseQueries",
        "DjangoCacheHitRatioLow",
        "DjangoUnappliedMigrations",
        "DjangoTargetDown",
        "PostgresDown",
        "PostgresTooManyConnections",
        "RedisDown",
        "RedisMemoryNearLimit",
        "NginxDown",
        "NginxDroppedConnections",
        "CeleryTaskFailures",
    ]:
        assert required in KNOWN_ALERTS


def test_unknown_override_name_is_rejected_known_ones_accepted() -> None:
    bad = owner({"alerts": {"overrides": {"HighErrorRatio": {"disabled": True}}}}).spec
    [problem] = semantic_problems(bad, KNOWN_ALERTS)
    assert "HighErrorRatio" in problem
    good = owner({"alerts": {"overrides": {"JewelryLatencyBudgetBurn": {"disabled": True}}}}).spec
    assert semantic_problems(good, KNOWN_ALERTS) == []


# --- SLOs ---------------------------------------------------------------------------------


# The SRE workbook's table ("Alerting on SLOs", for a 30-day SLO): budget consumed, long
# window, short window, burn-rate factor, page or ticket.
WORKBOOK = [
    (0.02, "1h", "5m", 14.4, "critical"),
    (0.05, "6h", "30m", 6, "critical"),
    (0.10, "1d", "2h", 3, "warning"),
    (0.10, "3d", "6h", 1, "warning"),
]


def test_burn_windows_are_the_workbook_table_for_30_days() -> None:
    assert [
        (b.budget_fraction, b.long, b.short, b.factor, b.severity) for b in burn_windows("30d")
    ] == WORKBOOK


@pytest.mark.parametrize(
    ("window", "longs", "shorts"),
    [
        ("28d", ["56m", "5h36m", "22h24m", "2d19h12m"], ["5m", "28m", "1h52m", "5h36m"]),
        ("7d", ["14m", "1h24m", "5h36m", "16h48m"], ["5m", "7m", "28m", "1h24m"]),
    ],
)
def test_burn_windows_of_other_slo_windows_spend_the_same_budget_share(
    window: str, longs: list[str], shorts: list[str]
) -> None:
    """Budget share spent before an alert fires is the invariant; no factor below 1.

    With the 30-day windows kept, a 7-day SLO would get factors 3.36/1.4/0.7/0.23 (the bug):
    tickets for burning slower than the budget allows. Scaled windows keep the factors.
    """
    burns = burn_windows(window)
    assert [b.long for b in burns] == longs
    assert [b.short for b in burns] == shorts
    for burn, (fraction, _, _, factor, severity) in zip(burns, WORKBOOK, strict=True):
        assert burn.severity == severity
        assert burn.factor == factor
        spent = burn.factor * duration_seconds(burn.long) / duration_seconds(window)
        assert spent == pytest.approx(fraction)
        assert duration_seconds(burn.short) >= 300
        assert burn.factor >= 1


def test_slo_recording_windows_follow_the_slo_window() -> None:
    assert slo_windows("30d") == ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
    names = records(rule_groups(owner({"slos": {**SLOS, "window": "7d"}})))
    for window in slo_windows("7d"):
        assert f"job:jewelry_slo_availability_errors:ratio_rate{window}" in names
    assert "job:jewelry_slo_availability_errors:ratio_rate3d" not in names


def test_seven_day_slo_alerts_use_scaled_windows_and_full_factors() -> None:
    spec = {"slos": {"window": "7d", "availability": {"objective": 99.9}}}
    burn = alerts(rule_groups(owner(spec)))["JewelryAvailabilityBudgetBurn"]
    selector = 'namespace="jewelry",job="shop-app-metrics"'
    assert burn[3]["expr"] == (
        f"job:jewelry_slo_availability_errors:ratio_rate16h48m{{{selector}}} > (1 * 0.001)\n"
        "and\n"
        f"job:jewelry_slo_availability_errors:ratio_rate1h24m{{{selector}}} > (1 * 0.001)"
    )
    assert [r["labels"]["long_window"] for r in burn] == ["14m", "1h24m", "5h36m", "16h48m"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300, "5m"), (3600, "1h"), (86400, "1d"), (241_920, "2d19h12m"), (5040, "1h24m")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert duration_seconds(text) == seconds


def test_error_budget() -> None:
    assert error_budget(99.9) == 0.001
    assert error_budget(99.5) == 0.005
    assert error_budget(99) == 0.01


def test_slo_recording_rules_cover_every_window() -> None:
    names = records(rule_groups(owner({"slos": SLOS})))
    for kind in ("availability", "latency"):
        for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
            assert f"job:jewelry_slo_{kind}_errors:ratio_rate{window}" in names


def test_availability_burn_alerts_page_and_ticket() -> None:
    rules = alerts(rule_groups(owner({"slos": {"availability": {"objective": 99.9}}})))
    burn = rules["JewelryAvailabilityBudgetBurn"]
    assert "JewelryLatencyBudgetBurn" not in rules
    assert [
        (r["labels"]["severity"], r["labels"]["long_window"], r["labels"]["short_window"], r["for"])
        for r in burn
    ] == [
        ("critical", "1h", "5m", "2m"),
        ("critical", "6h", "30m", "15m"),
        ("warning", "1d", "2h", "1h"),
        ("warning", "3d", "6h", "3h"),
    ]
    selector = 'namespace="jewelry",job="shop-app-metrics"'
    assert burn[0]["expr"] == (
        f"job:jewelry_slo_availability_errors:ratio_rate1h{{{selector}}} > (14.4 * 0.001)\n"
        "and\n"
        f"job:jewelry_slo_availability_errors:ratio_rate5m{{{selector}}} > (14.4 * 0.001)"
    )
    assert burn[3]["expr"].endswith("ratio_rate6h{" + selector + "} > (1 * 0.001)")
    assert burn[0]["labels"]["slo"] == "availability"


def test_slo_override_severity_and_disable() -> None:
    spec = {
        "slos": SLOS,
        "alerts": {
            "overrides": {
                "JewelryAvailabilityBudgetBurn": {"severity": "info", "labels": {"x": "y"}},
                "JewelryLatencyBudgetBurn": {"disabled": True},
            }
        },
    }
    rules = alerts(rule_groups(owner(spec)))
    assert "JewelryLatencyBudgetBurn" not in rules
    assert {r["labels"]["severity"] for r in rules["JewelryAvailabilityBudgetBurn"]} == {"info"}
    assert {r["labels"]["x"] for r in rules["JewelryAvailabilityBudgetBurn"]} == {"y"}


def test_latency_sli_uses_the_threshold_bucket() -> None:
    [rule] = [
        r
        for g in rule_groups(owner({"slos": SLOS}))
        for r in g["rules"]
        if r.get("record") == "job:jewelry_slo_latency_errors:ratio_rate1h"
    ]
    selector = 'namespace="jewelry",job="shop-app-metrics"'
    latency = "django_http_requests_latency_seconds_by_view_method"
    assert rule["expr"] == (
        "1 - (\n"
        f'sum by (cluster, namespace, job) (rate({latency}_bucket{{{selector},le="0.5"}}[1h]))\n/\n'
        f"sum by (cluster, namespace, job) (rate({latency}_count{{{selector}}}[1h]))\n)"
    )


@pytest.mark.parametrize("bucket", [0.01, 0.5, 1.0, 2.5, 10.0, 75.0])
def test_le_matcher_matches_both_spellings_of_a_bucket(
    bucket: float,
) -> None:
    """prometheus_client writes ``le="1.0"``; other clients and Prometheus 3 may say "1"."""
    matcher = le_matcher(bucket)
    op, quoted = re.fullmatch(r'le(=~?)"(.*)"', matcher).groups()  # type: ignore[union-attr]
    pattern = quoted.replace("\\\\", "\\") if op == "=~" else re.escape(quoted)
    client_spelling = floatToGoString(bucket)
    assert re.fullmatch(pattern, client_spelling)
    prometheus3_spelling = format(bucket, "g")
    assert re.fullmatch(pattern, prometheus3_spelling)
    assert not re.fullmatch(pattern, client_spelling + "5")


def test_chart_node_exporter_rules_are_generated_from_the_builders() -> None:
    """charts/jewelry-monitoring/rules/node-exporter.yaml is what the builders make now."""
    from devkit.manifests import CHART_NODE_RULES, REGENERATE, render_chart_node_rules

    assert CHART_NODE_RULES.read_text() == render_chart_node_rules(), (
        f"the chart's node exporter rules are stale: regenerate them with `.venv/bin/{REGENERATE}`"
    )
