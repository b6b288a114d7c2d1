"""What Prometheus says about one resource: are its endpoints scraped, its rules loaded and
able to fire, and how much of its error budget is left?

One check asks the Prometheus the resource is checked against (see ``which_prometheus``) a
bounded number of questions, each filtered on the server: the targets of each of its scrape
pools (active and dropped), its rule groups, which series its alerts need exist, and its SLO
series. That is ``pools + 3`` requests per resource per check interval, whatever the size of
the Prometheus. The answers are kept for half a check interval, so that the reconciles a
check itself causes (its status write comes back as a watch event) ask nothing again; a
change of what is asked (a new endpoint, another URL, other rules) asks at once.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from jewelry_monitoring.budgets import (
    budget_column,
    error_budget_left,
    objectives,
    slo_query,
    slo_statuses,
)
from jewelry_monitoring.builders.common import APP_COMPONENT, Owner
from jewelry_monitoring.builders.rules import component_job
from jewelry_monitoring.monitored import Judgement, judge, unanswered, unverified
from jewelry_monitoring.promapi import PrometheusAPI, PrometheusError
from jewelry_monitoring.rule_health import (
    LISTED,
    alert_needs,
    alerts_can_fire,
    cannot_fire,
    present,
    rule_groups_of,
    rules_loaded,
    series_query,
)
from jewelry_monitoring.spec import EXPORTER_NAMES
from jewelry_monitoring.status import JewelryMonitoringStatus, SLOStatus, TargetsStatus
from jewelry_monitoring.targets import (
    LISTED_TARGETS,
    NOT_DISCOVERED,
    NOT_SCRAPED_YET,
    UP,
    Endpoint,
    Verdict,
    endpoint_states,
    our_endpoints,
    scrape_pools,
    scraped_jobs,
    tally,
    targets_healthy,
)
from jewelry_monitoring.which_prometheus import NO_PROMETHEUS, Asked

Obj = dict[str, Any]
Key = tuple[str, str]
# The conditions a check sets, in the order they are reported.
CHECKED = ("TargetsHealthy", "RulesLoaded", "AlertsCanFire", "ErrorBudgetLeft")


@dataclass(frozen=True)
class Answers:
    """What Prometheus answered in one check (``error`` set: it could not be asked)."""

    targets: dict[str, Obj] = field(default_factory=dict)
    groups: list[Obj] = field(default_factory=list)
    series: list[Obj] = field(default_factory=list)
    slo_series: list[Obj] = field(default_factory=list)
    error: str = ""
    requests: int = 0


@dataclass(frozen=True)
class Observation:
    """The conditions and status fields a check gives, Ready's and Degraded's verdicts on
    whether monitoring works (``monitored``), and the requests it made."""

    conditions: dict[str, Verdict]
    monitored: Judgement
    targets: TargetsStatus | None = None
    slos: list[SLOStatus] = field(default_factory=list)
    budget: str = ""
    cannot_fire: list[str] = field(default_factory=list)
    requests: int = 0


@dataclass(frozen=True)
class Questions:
    """What one check asks Prometheus about a resource: equal questions, equal answers."""

    url: str
    pools: tuple[str, ...]
    groups: tuple[str, ...]
    series: str | None
    slos: str | None
    endpoints: tuple[str, ...]


def questions(owner: Owner, objects: list[Obj], endpoints: list[Endpoint], url: str) -> Questions:
    """What one check asks about ``owner``, whose ServiceMonitors and PrometheusRule are
    among ``objects`` (the desired ones, or doctor's as found in the cluster)."""
    spec = owner.spec
    components = (["app"] if spec.app.enabled else []) + [
        name for name in EXPORTER_NAMES if name in spec.exporters.enabled()
    ]
    jobs = [component_job(owner, component) for component in components]
    groups = rule_groups_of(objects)
    app_job = component_job(owner, "app")
    return Questions(
        url=url,
        pools=tuple(scrape_pools(objects)),
        groups=tuple(str(g["name"]) for g in groups),
        series=series_query(owner.namespace, jobs, alert_needs(groups)),
        slos=slo_query(owner.namespace, app_job) if objectives(spec) else None,
        endpoints=tuple(f"{e.pool} {e.address}" for e in endpoints),
    )


def ask(api: PrometheusAPI, questions: Questions) -> Answers:
    """Every question of a check, or the first error."""
    try:
        targets = {pool: api.targets(pool) for pool in questions.pools}
        groups = api.rule_groups(list(questions.groups)) if questions.groups else []
        series = api.query(questions.series) if questions.series else []
        slo_series = api.query(questions.slos) if questions.slos else []
    except PrometheusError as error:
        return Answers(error=str(error), requests=api.requests)
    return Answers(targets, groups, series, slo_series, requests=api.requests)


class Observer:
    """Checks resources against their Prometheus, keeping each one's last answers."""

    def __init__(
        self,
        prometheus: Callable[[str], PrometheusAPI] = PrometheusAPI,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._prometheus = prometheus
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: dict[Key, tuple[float, Questions, Answers]] = {}

    def forget(self, key: Key) -> None:
        with self._lock:
            self._answers.pop(key, None)

    def observe(
        self,
        owner: Owner,
        desired: list[Obj],
        slices: list[Obj],
        asked: Asked,
        not_selected: str,
        previous: JewelryMonitoringStatus,
        interval: float,
        young: bool = False,
    ) -> Observation:
        """The check of ``owner`` (its ``desired`` objects, its Services' ``slices``) against
        the Prometheus ``asked``; ``not_selected`` is SelectedByPrometheus' message when it
        is not True, ``previous`` the status the values are settled against, ``young``
        whether the resource was created so recently that Prometheus may not have got to
        it yet (``monitored.grace_seconds``)."""
        spec = owner.spec
        if not asked.url:
            unknown = Verdict("Unknown", asked.reason, asked.message)
            verdict = unverified(asked.message) if asked.reason == NO_PROMETHEUS else None
            return Observation(
                {kind: unknown for kind in CHECKED},
                verdict or unanswered(asked.reason, asked.message),
            )
        pools = scrape_pools(desired)
        endpoints = our_endpoints(desired, slices)
        alerts = alert_needs(rule_groups_of(desired))
        asking = questions(owner, desired, endpoints, asked.url)
        answers = self._answers_for((owner.namespace, owner.name), asking, interval)
        if answers.error:
            unknown = Verdict("Unknown", "PrometheusUnreachable", answers.error)
            return Observation(
                {kind: unknown for kind in CHECKED},
                unanswered(
                    "PrometheusUnreachable",
                    f"Prometheus at {asked.url} does not answer: {answers.error}",
                ),
                requests=answers.requests,
            )
        app_pools = frozenset(scrape_pools(desired, APP_COMPONENT))
        states = endpoint_states(endpoints, pools, answers.targets, not_selected, app_pools)
        counts = tally(states)
        problems = [s for s in states if s.state != UP]
        targets = TargetsStatus(
            endpoints=len(states),
            up=counts[UP],
            failing=counts["failing"],
            dropped=counts["dropped"],
            not_discovered=counts[NOT_DISCOVERED],
            not_scraped_yet=counts[NOT_SCRAPED_YET],
            problems=[s.line for s in problems[:LISTED_TARGETS]],
        )
        blocked = cannot_fire(alerts, present(answers.series), scraped_jobs(answers.targets))
        rule_file = f"{owner.namespace}-{_rule_name(desired)}-"
        slos = slo_statuses(spec, answers.slo_series, previous.slos)
        healthy = targets_healthy(asked.url, pools, states)
        loaded = rules_loaded(
            asked.url, list(asking.groups), answers.groups, rule_file, not_selected
        )
        return Observation(
            {
                "TargetsHealthy": healthy,
                "RulesLoaded": loaded,
                "AlertsCanFire": alerts_can_fire(alerts, blocked),
                "ErrorBudgetLeft": error_budget_left(spec, slos),
            },
            judge(asked.url, pools, app_pools, states, healthy, loaded, young),
            targets=targets,
            slos=slos,
            budget=budget_column(slos),
            cannot_fire=[
                f"{alert}: {why.text}"
                for alert, why in sorted(blocked.items(), key=lambda item: not item[1].certain)[
                    :LISTED
                ]
            ],
            requests=answers.requests,
        )

    def _answers_for(self, key: Key, asking: Questions, interval: float) -> Answers:
        """The answers to ``asking``: kept ones if younger than half ``interval`` (their
        request count then 0), else asked now."""
        now = self._clock()
        with self._lock:
            kept = self._answers.get(key)
        if kept is not None and kept[1] == asking and now - kept[0] < interval / 2:
            return dataclasses.replace(kept[2], requests=0)
        answers = ask(self._prometheus(asking.url), asking)
        with self._lock:
            self._answers[key] = (now, asking, answers)
        return answers


def _rule_name(desired: list[Obj]) -> str:
    return next((o["metadata"]["name"] for o in desired if o["kind"] == "PrometheusRule"), "")
