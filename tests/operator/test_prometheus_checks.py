"""The pure parts of the Prometheus checks: which Prometheus may be asked, the chart's defaults,
what an alert needs to fire, whether our rules are loaded, and the error budgets."""

from __future__ import annotations

from typing import Any

import pytest

from jewelry_monitoring.budgets import budget_column, error_budget_left, slo_statuses
from jewelry_monitoring.config import ConfigError, ResourceDefaults, resource_defaults
from jewelry_monitoring.promql import PromQLError, expand, needs
from jewelry_monitoring.rule_health import (
    Blocked,
    alert_needs,
    alerts_can_fire,
    cannot_fire,
    rules_loaded,
    series_query,
)
from jewelry_monitoring.spec import JewelryMonitoringSpec, PrometheusSpec
from jewelry_monitoring.status import SLOStatus
from jewelry_monitoring.which_prometheus import choose

# -- which Prometheus -----------------------------------------------------------------------


def _prometheus(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}, "spec": spec}


KPS = _prometheus("monitoring", "kps-kube-prometheus-prometheus")


def test_a_url_in_a_resource_is_asked_only_if_the_chart_allows_it() -> None:
    metadata = PrometheusSpec(url="http://169.254.169.254/latest/meta-data#")
    refused = choose(metadata, ResourceDefaults(), [KPS])
    assert (refused.url, refused.reason) == ("", "PrometheusNotAllowed")
    assert "prometheus.allowedUrls" in refused.message
    allowed = ResourceDefaults(allowed_prometheus_urls=("http://thanos.monitoring.svc:9090/",))
    asked = choose(PrometheusSpec(url="http://Thanos.monitoring.svc:9090"), allowed, [])
    assert asked.url == "http://Thanos.monitoring.svc:9090" and asked.resource is None
    # The chart's own default URL is allowed too.
    default = ResourceDefaults(prometheus_url="http://p.monitoring.svc:9090")
    assert choose(PrometheusSpec(url="http://p.monitoring.svc:9090"), default, []).url


def test_a_prometheus_resource_is_asked_through_its_governing_service() -> None:
    ref = PrometheusSpec.model_validate(
        {"prometheusRef": {"namespace": "monitoring", "name": "kps-kube-prometheus-prometheus"}}
    )
    asked = choose(ref, ResourceDefaults(), [KPS])
    assert asked.url == "http://prometheus-operated.monitoring.svc:9090"
    assert asked.resource == ("monitoring", "kps-kube-prometheus-prometheus")
    prefixed = _prometheus("monitoring", "kps-kube-prometheus-prometheus", routePrefix="/prom/")
    other = _prometheus("monitoring", "second")
    assert choose(ref, ResourceDefaults(), [prefixed, other]).url == (
        "http://prometheus-kps-kube-prometheus-prometheus-0.prometheus-operated.monitoring.svc"
        ":9090/prom"
    )
    missing = choose(ref, ResourceDefaults(), [other])
    assert (missing.url, missing.reason) == ("", "PrometheusNotFound")


def test_the_charts_prometheus_is_asked_when_the_resource_names_none() -> None:
    by_ref = ResourceDefaults(prometheus_ref="monitoring/kps-kube-prometheus-prometheus")
    assert choose(PrometheusSpec(), by_ref, [KPS]).url.startswith("http://prometheus-operated.")
    by_url = ResourceDefaults(prometheus_url="http://p:9090")
    assert choose(PrometheusSpec(), by_url, [KPS]).url == "http://p:9090"
    nothing = choose(None, ResourceDefaults(), [KPS])
    assert (nothing.url, nothing.reason) == ("", "NoPrometheusToAsk")


def test_chart_defaults_fill_only_what_a_resource_leaves_empty() -> None:
    defaults = resource_defaults(
        {
            "JM_DEFAULT_MONITOR_LABELS": '{"release": "kps"}',
            "JM_DEFAULT_ALERTMANAGER_CONFIG_LABELS": '{"alertmanager": "main"}',
            "JM_PROMETHEUS_REF": "monitoring/kps-kube-prometheus-prometheus",
        }
    )
    routing = {"receivers": [{"name": "r"}], "receiver": "r"}
    bare = defaults.apply({"app": {"podSelector": {"a": "b"}}, "routing": routing})
    assert bare["monitorLabels"] == {"release": "kps"}
    assert bare["routing"]["alertmanagerConfigLabels"] == {"alertmanager": "main"}
    assert bare["prometheus"] == {}
    own = {"monitorLabels": {"release": "mine"}, "prometheus": {"checkInterval": "5m"}}
    assert defaults.apply(own) == own


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"JM_DEFAULT_MONITOR_LABELS": "release=kps"}, "JSON object"),
        ({"JM_DEFAULT_MONITOR_LABELS": '{"release": "k p s"}'}, "not a label value"),
        ({"JM_PROMETHEUS_REF": "kps"}, "<namespace>/<name>"),
        ({"JM_PROMETHEUS_ALLOWED_URLS": "169.254.169.254"}, "not an http(s) URL"),
        ({"JM_PROMETHEUS_REF": "m/p", "JM_PROMETHEUS_URL": "http://p:9090"}, "exclusive"),
    ],
)
def test_bad_chart_defaults_stop_the_operator_with_the_setting_named(
    environ: dict[str, str], complaint: str
) -> None:
    with pytest.raises(ConfigError, match="JM_") as raised:
        resource_defaults(environ)
    assert complaint in str(raised.value)


def test_url_and_prometheus_ref_are_exclusive() -> None:
    from jewelry_monitoring.builders.rules import KNOWN_ALERTS
    from jewelry_monitoring.spec import validate

    problems, _ = validate(
        {
            "app": {"podSelector": {"a": "b"}},
            "prometheus": {
                "url": "http://p:9090",
                "prometheusRef": {"namespace": "m", "name": "p"},
            },
        },
        KNOWN_ALERTS,
    )
    assert problems == ["prometheus.url and prometheus.prometheusRef are exclusive: choose one"]


# -- what an alert needs --------------------------------------------------------------------


def _alternatives(expr: str) -> list[list[str]]:
    return sorted(sorted(f"{name}@{job}" if job else name for name, job in a) for a in needs(expr))


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('a{job="j"} / on (x) group_left (y) b', [["a@j", "b"]]),
        ("a or b * 0", [["a"], ["b"]]),
        ("a unless b", [["a"]]),
        ('up{job="j"} == 0 or absent(up{job="j"})', [[], ["up@j"]]),
        ("sum by (job) (rate(c[5m] offset 1h)) > bool 2", [["c"]]),
        ("max(x) by (job) and histogram_quantile(0.9, rate(h[1m:10s]))", [["h", "x"]]),
        ('{__name__="n",job="j"} - vector(1) ^ 2 ^ 3', [["n@j"]]),
        ("-count_values without (a) ('v', m) @ start()", [["m"]]),
        ("(p or q) and (r or s)", [["p", "r"], ["p", "s"], ["q", "r"], ["q", "s"]]),
    ],
)
def test_needs_reads_promql_into_alternatives(expr: str, expected: list[list[str]]) -> None:
    assert _alternatives(expr) == expected


def test_needs_refuses_what_is_not_promql() -> None:
    with pytest.raises(PromQLError):
        needs("sum(")
    with pytest.raises(PromQLError):
        needs('{job="j"}')


def test_recorded_series_stand_for_what_their_rules_need() -> None:
    records = {"job:r:rate5m": needs("a or b")}
    assert expand(needs("job:r:rate5m > 1 and c"), records) == needs("(a or b) and c")


# -- rules loaded, alerts able to fire ------------------------------------------------------

GROUPS = [
    {"name": "jewelry.shop.x.app.recording", "rules": [{"record": "job:r", "expr": "a_total"}]},
    {
        "name": "jewelry.shop.x.app.alerts",
        "rules": [
            {"alert": "UsesRecord", "expr": 'job:r{job="app"} > 1'},
            {"alert": "Migrations", "expr": 'django_migrations_unapplied_total{job="app"} > 0'},
            {"alert": "Guarded", "expr": 'celery_worker_up{job="c"} or up{job="c"} * 0'},
            {"alert": "Failures", "expr": 'rate(celery_task_failed_total{job="c"}[5m]) > 0'},
            {"alert": "Cache", "expr": 'django_cache_get_hits_total{job="app"} < 1'},
        ],
    },
]


def test_alerts_whose_inputs_never_exist_are_named_with_what_to_enable() -> None:
    alerts = alert_needs(GROUPS)
    assert alerts["UsesRecord"] == frozenset({frozenset({("a_total", "")})})
    query = series_query("shop", ["app", "c"], alerts)
    assert query is not None
    assert query.startswith('count by (__name__, job) ({namespace="shop",job=~"app|c",')
    assert "celery_task_received_total" in query  # the marker of task events
    have = {("a_total", "app"), ("up", "c"), ("django_cache_get_total", "app")}
    blocked = cannot_fire(alerts, have)
    assert {alert: (b.text, b.certain) for alert, b in blocked.items()} == {
        "Failures": (
            "not seen yet: no celery_task_received_total from job c: turn on Celery task "
            "events: worker_send_task_events = True and task_send_sent_event = True in the "
            "Celery configuration (or start workers with -E) (or it was not used since the "
            "app started)",
            False,
        ),
        "Migrations": (
            "no django_migrations_unapplied_total from job app: set "
            "PROMETHEUS_EXPORT_MIGRATIONS = True in the Django settings",
            True,
        ),
    }
    verdict = alerts_can_fire(alerts, blocked)
    assert (verdict.status, verdict.reason) == ("False", "InputsMissing")
    assert verdict.message.startswith("1 of 5 alerts cannot fire: Migrations (no django_")
    # Migrations exported, no task seen yet: maybe only unused.
    exported = have | {("django_migrations_unapplied_total", "app")}
    unsure = alerts_can_fire(alerts, cannot_fire(alerts, exported))
    assert (unsure.status, unsure.reason) == ("Unknown", "InputsNotSeenYet")
    # Task events on, no failure yet: the counter appears with the first one.
    later = exported | {("celery_task_received_total", "c")}
    assert cannot_fire(alerts, later) == {}
    assert alerts_can_fire(alerts, {}).status == "True"


def test_nothing_is_said_of_the_inputs_of_a_job_that_is_not_scraped() -> None:
    """A target refusing Prometheus (403) has no series at all: that is TargetsHealthy's
    finding, not a missing setting of the app."""
    alerts = alert_needs(GROUPS)
    blocked = cannot_fire(alerts, {("up", "app"), ("up", "c")}, scraped={"c"})
    assert blocked["Migrations"] == Blocked(
        "job app is not scraped successfully (see TargetsHealthy)", certain=False
    )
    assert not blocked["Cache"].certain


def _group(name: str, *health: str, error: str = "") -> dict[str, Any]:
    rules = [{"name": f"r{i}", "health": h, "lastError": error} for i, h in enumerate(health)]
    return {"name": name, "file": "/etc/prometheus/rules/x/shop-x-rules-uid.yaml", "rules": rules}


def test_rules_loaded_names_missing_groups_and_evaluation_errors() -> None:
    wanted = ["g1", "g2"]
    missing = rules_loaded("http://p", wanted, [_group("g1", "ok")], "shop-x-rules-", "why")
    assert (missing.status, missing.reason) == ("False", "RulesNotLoaded")
    assert missing.message == "1 of 2 rule groups are not loaded in Prometheus at http://p: g2: why"
    failing = rules_loaded(
        "http://p", wanted, [_group("g1", "ok"), _group("g2", "err", error="bad")], "shop-x-"
    )
    assert (failing.reason, failing.message) == (
        "RuleEvaluationFailing",
        "1 rules fail to evaluate: g2/r0: bad",
    )
    fresh = rules_loaded("http://p", wanted, [_group("g1", "ok"), _group("g2", "unknown")], "")
    assert fresh.reason == "NotEvaluatedYet"
    # Another file's group of the same name does not stand for ours.
    theirs = {**_group("g2", "err", error="theirs"), "file": "/rules/other-ns-r-uid.yaml"}
    loaded = [_group("g1", "ok"), theirs, _group("g2", "ok")]
    assert rules_loaded("http://p", wanted, loaded, "shop-x-rules-").status == "True"


# -- error budgets --------------------------------------------------------------------------

SPEC = JewelryMonitoringSpec.model_validate(
    {"app": {"podSelector": {"a": "b"}}, "slos": {"availability": {"objective": 99.0}}}
)


def _series(**values: float | str) -> list[dict[str, Any]]:
    return [
        {"metric": {"__name__": f"job:jewelry_slo_availability_{name}"}, "value": [0, str(v)]}
        for name, v in values.items()
    ]


def test_budgets_come_from_the_recorded_series_and_move_only_by_steps() -> None:
    series = _series(
        **{
            "errors:ratio_rate30d": 0.004,
            "error_budget:remaining_ratio": 0.6,
            "errors:ratio_rate5m": 0.02,
            "errors:ratio_rate1h": "NaN",
        }
    )
    [slo] = slo_statuses(SPEC, series, [])
    assert slo == SLOStatus(
        name="availability",
        objective=99.0,
        sli=99.6,
        budget_remaining=60.0,
        burn_rates={"5m": 2.0},
    )
    assert budget_column([slo]) == "60%"
    assert error_budget_left(SPEC, [slo]).message == (
        "availability: 60% of the error budget left over 30d"
    )
    nudged = _series(
        **{
            "errors:ratio_rate30d": 0.00405,
            "error_budget:remaining_ratio": 0.595,
            "errors:ratio_rate5m": 0.0205,
        }
    )
    assert slo_statuses(SPEC, nudged, [slo]) == [slo]  # half a point, 2.5 %: nothing to write
    moved = _series(**{"errors:ratio_rate30d": 0.012, "error_budget:remaining_ratio": -0.2})
    [spent] = slo_statuses(SPEC, moved, [slo])
    assert (spent.budget_remaining, spent.sli) == (-20.0, 98.8)
    verdict = error_budget_left(SPEC, [spent])
    assert (verdict.status, verdict.reason) == ("False", "BudgetSpent")
    assert verdict.message == (
        "availability: SLI 98.8% over 30d against 99.0%, the error budget is spent (-20% left)"
    )
    assert error_budget_left(SPEC, slo_statuses(SPEC, [], [])).reason == "NoData"
