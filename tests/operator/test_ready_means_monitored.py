"""Ready means monitored: the pure judgement of Ready and Degraded from what a Prometheus
answered (jewelry_monitoring.monitored), on the endpoint states and verdicts the check draws.

The same cases against a real prometheus-operator and Prometheus are in
tests/monitoring/test_operator_asks_prometheus.py; here each branch is pinned, including
those a live run only passes through (the grace after creation, rules loading late).
"""

from __future__ import annotations

import datetime
from typing import Any

from jewelry_monitoring.builders.common import Owner
from jewelry_monitoring.builders.desired import MONITORING_KINDS, desired_objects
from jewelry_monitoring.config import ResourceDefaults
from jewelry_monitoring.monitored import FIRST_SCRAPE_GRACE, grace_seconds, is_young, judge
from jewelry_monitoring.observe import Observer
from jewelry_monitoring.promapi import PrometheusError
from jewelry_monitoring.rule_health import rules_loaded
from jewelry_monitoring.spec import JewelryMonitoringSpec
from jewelry_monitoring.status import JewelryMonitoringStatus
from jewelry_monitoring.targets import (
    APP_403_FIX,
    DROPPED,
    FAILING,
    NOT_DISCOVERED,
    NOT_SCRAPED_YET,
    UP,
    EndpointState,
    Verdict,
    targets_healthy,
)
from jewelry_monitoring.which_prometheus import Asked, choose

URL = "http://prometheus-operated.monitoring.svc:9090"
APP = "serviceMonitor/shop/shop-app-metrics/0"
REDIS = "serviceMonitor/shop/shop-redis-exporter/0"
POOLS = [APP, REDIS]
APP_POOLS = frozenset({APP})
LOADED = Verdict("True", "Evaluating", "2 rule groups (21 rules) loaded, evaluating without errors")


def _verdicts(
    states: list[EndpointState], rules: Verdict = LOADED, young: bool = False
) -> tuple[tuple[str, str, str], tuple[str, str, str] | None]:
    judgement = judge(
        URL, POOLS, APP_POOLS, states, targets_healthy(URL, POOLS, states), rules, young
    )
    ready, degraded = judgement.ready, judgement.degraded
    return (ready.status, ready.reason, ready.message), (
        None if degraded is None else (degraded.status, degraded.reason, degraded.message)
    )


def _app(state: str, why: str = "", lagging: bool = False) -> EndpointState:
    return EndpointState(APP, "10.244.0.7:8000", state, why, lagging)


def _redis(state: str, why: str = "", lagging: bool = False) -> EndpointState:
    return EndpointState(REDIS, "10.244.0.8:9121", state, why, lagging)


FORBIDDEN = (
    "refused (403): the app's PROMETHEUS_METRICS_ALLOWED_IPS does not allow Prometheus' "
    "address (server returned HTTP status 403 Forbidden)"
)
NOT_YET = "Prometheus has no target at all in this scrape pool: its configuration does not have "
REFUSED = "connection refused: nothing listens on the port (dial tcp: connection refused)"


def test_everything_scraped_and_loaded_is_monitored() -> None:
    ready, degraded = _verdicts([_app(UP), _redis(UP)])
    assert ready == (
        "True",
        "Monitored",
        f"Prometheus at {URL} scrapes 2 of 2 targets; 2 rule groups (21 rules) loaded, "
        "evaluating without errors",
    )
    assert degraded is None


def test_nothing_scraped_is_not_ready_with_why_and_what_to_change() -> None:
    ready, degraded = _verdicts([_app(FAILING, FORBIDDEN), _redis(FAILING, REFUSED)])
    assert ready[:2] == ("False", "TargetsDown")
    assert ready[2].startswith(
        f"no target of the app is scraped by Prometheus at {URL}: 1 failing of 1: "
    )
    assert ready[2].endswith(
        f"; to fix: {APP_403_FIX} (jewelry-monitoring doctor lists every target with its fix)"
    )
    # Degraded lists every target's problem, the exporter's too.
    assert degraded is not None and degraded[:2] == ("True", "TargetsDown")
    assert degraded[2].startswith("2 failing of 2: ") and REFUSED in degraded[2]
    # Dropped by a relabeling: its reason says what to compare, whatever the age.
    dropped = "a relabeling drops it (app.relabelings, or the ServiceMonitor's own)"
    young, _ = _verdicts([_app(DROPPED, dropped), _redis(DROPPED, dropped)], young=True)
    assert young[:2] == ("False", "TargetsDropped") and dropped in young[2]


def test_a_new_resource_waits_for_its_first_scrape_then_says_why_not() -> None:
    lagging = [_app(NOT_DISCOVERED, NOT_YET, lagging=True), _redis(NOT_SCRAPED_YET, lagging=True)]
    ready, degraded = _verdicts(lagging, young=True)
    assert ready[:2] == ("False", "WaitingForFirstScrape")
    assert ready[2].startswith(f"waiting for the first scrape by Prometheus at {URL}: ")
    assert degraded is None  # nothing is known to be wrong yet
    ready, degraded = _verdicts(lagging, young=False)
    assert ready[:2] == ("False", "TargetsNotDiscovered") and NOT_YET in ready[2]
    assert degraded is not None and degraded[1] == "TargetsNotDiscovered"
    # Nothing to scrape at all (no endpoint yet: pods starting).
    assert _verdicts([], young=True)[0][:2] == ("False", "WaitingForFirstScrape")
    assert _verdicts([], young=False)[0][:2] == ("False", "NoTargets")
    # A pod without the named port is wrong from the start: no waiting for it.
    no_port = "Service shop-app-metrics has no port 'metrics' on this pod"
    ready, _ = _verdicts([_app(NOT_DISCOVERED, no_port)], young=True)
    assert ready[:2] == ("False", "TargetsNotDiscovered") and no_port in ready[2]


def test_ready_follows_the_app_an_exporter_alone_scraped_is_not_monitoring() -> None:
    ready, degraded = _verdicts([_app(FAILING, REFUSED), _redis(UP)])
    assert ready[:2] == ("False", "TargetsDown")
    assert ready[2].startswith(f"no target of the app is scraped by Prometheus at {URL}: ")
    assert "make the pods answer Prometheus on their metrics port" in ready[2]
    assert degraded is not None and degraded[:2] == ("True", "TargetsDown")
    # Young: the app not scraped yet beside a scraped exporter is waited for.
    lagging = [_app(NOT_SCRAPED_YET, lagging=True), _redis(UP)]
    assert _verdicts(lagging, young=True) == (
        (
            "False",
            "WaitingForFirstScrape",
            f"waiting for the first scrape by Prometheus at {URL}: 1 not scraped yet of 1",
        ),
        None,
    )


def test_no_service_monitor_is_not_monitored() -> None:
    """Without prometheus-operator's CRDs there is no ServiceMonitor: nothing is scraped."""
    judgement = judge(URL, [], frozenset(), [], targets_healthy(URL, [], []), LOADED, False)
    assert (judgement.ready.status, judgement.ready.reason) == ("False", "NoServiceMonitors")
    assert judgement.ready.message == (
        f"Prometheus at {URL} scrapes nothing of this resource: this resource has no ServiceMonitor"
    )


def test_a_partial_failure_keeps_ready_and_sets_degraded() -> None:
    ready, degraded = _verdicts([_app(UP), _redis(FAILING, REFUSED)])
    assert ready[:2] == ("True", "Monitored")
    assert "scrapes 1 of 2 targets; 2 rule groups" in ready[2] and ready[2].endswith(
        "; see Degraded"
    )
    assert degraded is not None and degraded[:2] == ("True", "TargetsDown")
    assert REFUSED in degraded[2] and "make the pods answer Prometheus" in degraded[2]
    # Not yet discovered beside a scraped app, right after creation: nothing wrong yet.
    assert _verdicts([_app(UP), _redis(NOT_SCRAPED_YET, lagging=True)], young=True)[1] is None


def _group(name: str, health: str, error: str = "") -> dict[str, Any]:
    rule = {"name": "r", "health": health, "lastError": error}
    return {
        "name": name,
        "file": "/etc/prometheus/rules/x/shop-shop-rules-uid.yaml",
        "rules": [rule],
    }


def test_rules_not_loaded_are_waited_for_then_not_ready_and_failing_rules_degrade() -> None:
    wanted = ["app.recording", "app.alerts"]
    missing = rules_loaded(URL, wanted, [], "shop-shop-rules-")
    ready, degraded = _verdicts([_app(UP), _redis(UP)], missing, young=True)
    assert ready[:2] == ("False", "WaitingForRules")
    assert ready[2].startswith("waiting for Prometheus: 2 of 2 rule groups are not loaded")
    assert degraded is None
    ready, degraded = _verdicts([_app(UP), _redis(UP)], missing)
    assert ready[:2] == ("False", "RulesNotLoaded")
    assert degraded is not None and degraded[:2] == ("True", "RulesNotLoaded")
    # Nothing scraped comes first.
    assert _verdicts([_app(FAILING, REFUSED)], missing)[0][1] == "TargetsDown"
    # One rule failing among the others: still monitored, degraded.
    loaded = [_group("app.recording", "ok"), _group("app.alerts", "err", "many-to-many")]
    failing = rules_loaded(URL, wanted, loaded, "shop-shop-rules-")
    ready, degraded = _verdicts([_app(UP), _redis(UP)], failing)
    assert ready[:2] == ("True", "Monitored") and ready[2].endswith("; see Degraded")
    assert degraded == ("True", "RuleEvaluationFailing", failing.message)


def test_the_grace_lasts_at_least_two_check_intervals() -> None:
    assert grace_seconds(60) == FIRST_SCRAPE_GRACE
    assert grace_seconds(600) == 1200
    now = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
    assert is_young("2026-12-07T11:56:00Z", now, 60)
    assert not is_young("2026-12-07T11:55:00Z", now, 60)
    assert is_young("2026-12-07T11:45:00Z", now, 600)
    # A stamp the API server would never write: nothing is waited for.
    assert not is_young("", now, 60)


def test_without_a_prometheus_to_ask_ready_says_scraping_is_unverified_and_how_to_check() -> None:
    spec = JewelryMonitoringSpec.model_validate({"app": {"podSelector": {"app": "shop"}}})
    owner = Owner(name="shop", namespace="shop", uid="u", spec=spec)
    nothing = choose(None, ResourceDefaults(), [])
    observation = Observer().observe(
        owner, [], [], nothing, "", JewelryMonitoringStatus(), 60.0, young=True
    )
    ready = observation.monitored.ready
    assert (ready.status, ready.reason) == ("True", "ScrapingUnverified")
    assert ready.message.startswith(
        "every child is applied; whether Prometheus scrapes them is not verified: "
    )
    assert "the chart's prometheus.ref" in ready.message
    assert "prometheus.url for every resource" in ready.message
    assert observation.monitored.degraded is None
    assert observation.requests == 0


def _observe_without_answers(asked: Any, prometheus: Any = None) -> Any:
    spec = JewelryMonitoringSpec.model_validate({"app": {"podSelector": {"app": "shop"}}})
    owner = Owner(name="shop", namespace="shop", uid="u", spec=spec)
    desired = desired_objects(owner, MONITORING_KINDS)
    observer = Observer(prometheus) if prometheus else Observer()
    return observer.observe(owner, desired, [], asked, "", JewelryMonitoringStatus(), 60.0)


def test_a_prometheus_the_chart_does_not_allow_leaves_ready_unknown_not_true() -> None:
    """A resource that names a Prometheus asked for its scraping to be verified; one that
    cannot be asked tells nothing, so Ready may not pass ``kubectl wait`` as True."""
    spec = JewelryMonitoringSpec.model_validate(
        {"app": {"podSelector": {"app": "shop"}}, "prometheus": {"url": "http://169.254.169.254/"}}
    )
    asked = choose(spec.prometheus, ResourceDefaults(prometheus_url=URL), [])
    observation = _observe_without_answers(asked)
    ready = observation.monitored.ready
    assert (ready.status, ready.reason) == ("Unknown", "PrometheusNotAllowed")
    assert "prometheus.allowedUrls" in ready.message
    assert observation.requests == 0


def test_a_prometheus_that_does_not_answer_leaves_ready_unknown_not_true() -> None:
    class Silent:
        def __init__(self, url: str) -> None:
            self.url = url
            self.requests = 0

        def __getattr__(self, name: str) -> Any:
            def refuse(*args: Any, **kwargs: Any) -> Any:
                self.requests += 1
                raise PrometheusError(f"{self.url}: connection refused")

            return refuse

    ready = _observe_without_answers(Asked(url=URL), Silent).monitored.ready
    assert (ready.status, ready.reason) == ("Unknown", "PrometheusUnreachable")
    assert f"Prometheus at {URL} does not answer" in ready.message
