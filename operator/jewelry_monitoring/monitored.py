"""Does monitoring work? Ready's and Degraded's verdicts from what a Prometheus answered.

Objects that are applied are not monitoring: a resource whose app is not scraped, or whose
rules its Prometheus has not loaded, watches nothing and fires nothing. So, once the
operator can ask a Prometheus, Ready is True only when at least one of the app's targets is
up and the rule groups are loaded; otherwise it names the first reason that applies and what
to change. A partial failure (the app scraped, an exporter down; a rule failing to evaluate
among many) keeps Ready True and sets Degraded with the reason.

Right after a resource is created nothing can be scraped yet: prometheus-operator must write
the configuration, Prometheus reload it, discover the endpoints and scrape them. Within a
grace period after creation, endpoints that may only be not there *yet* make Ready
False/WaitingForFirstScrape (or WaitingForRules), not a failure; after it, they are one.
Messages carry no time or age, so a check that finds nothing new writes nothing. Pure.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from jewelry_monitoring.targets import (
    APP_403_FIX,
    FAILING,
    UP,
    EndpointState,
    Verdict,
    tally,
    targets_healthy,
)

# How long after its creation a resource's targets and rules may be missing only because
# Prometheus has not got to them yet: prometheus-operator regenerates, the config reloader
# sees the change (kubelet syncs the mounted Secret and ConfigMaps within about a minute),
# Prometheus discovers and scrapes within a scrape interval, the operator checks within one
# check interval. At least two check intervals, whatever their length.
FIRST_SCRAPE_GRACE = 300.0
MONITORED = "Monitored"
UNVERIFIED = "ScrapingUnverified"
WAITING_FOR_SCRAPE = "WaitingForFirstScrape"
WAITING_FOR_RULES = "WaitingForRules"
# Where every target of a resource is listed with the exact fix.
DOCTOR = "jewelry-monitoring doctor lists every target with its fix"


@dataclass(frozen=True)
class Judgement:
    """Ready's verdict, and Degraded's reason and message when something is wrong (None:
    nothing the check found is)."""

    ready: Verdict
    degraded: Verdict | None = None


def unverified(why: str) -> Judgement:
    """Ready with no Prometheus to ask at all (the chart names none): True as far as the
    API tells, saying that scraping is not verified and what to set to verify it."""
    return Judgement(
        Verdict(
            "True",
            UNVERIFIED,
            f"every child is applied; whether Prometheus scrapes them is not verified: {why}",
        )
    )


def unanswered(reason: str, why: str) -> Judgement:
    """Ready when the Prometheus that should tell cannot be asked (one the chart does not
    allow, or one that does not answer): Unknown, not True. Monitoring was asked to be
    verified, and nothing says the app is scraped; True would let ``kubectl wait`` pass
    while nothing may be scraped."""
    return Judgement(
        Verdict("Unknown", reason, f"whether Prometheus scrapes the app is not known: {why}")
    )


def grace_seconds(check_interval: float) -> float:
    """How long after creation missing targets and rules count as not there yet."""
    return max(FIRST_SCRAPE_GRACE, 2 * check_interval)


def is_young(created: str, now: datetime.datetime, check_interval: float) -> bool:
    """Whether a resource created at ``created`` (its RFC 3339 creationTimestamp) is within
    the grace at ``now``; a stamp that cannot be read counts as old (nothing is waited for)."""
    try:
        stamp = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return False
    return (now - stamp).total_seconds() < grace_seconds(check_interval)


def _fix(problems: list[EndpointState], app_pools: frozenset[str]) -> str:
    """What to change for the first problem, when its reason does not say it already."""
    first = problems[0]
    if first.state == FAILING and first.pool in app_pools and "(403)" in first.why:
        return f"; to fix: {APP_403_FIX} ({DOCTOR})"
    if first.state == FAILING:
        return (
            "; to fix: make the pods answer Prometheus on their metrics port, or see why "
            f"they do not ({DOCTOR})"
        )
    return f" ({DOCTOR})"


def _problem(verdict: Verdict, fix: str = "") -> Verdict:
    """Degraded's verdict for a problem a condition found."""
    return Verdict("True", verdict.reason, verdict.message + fix)


def judge(
    url: str,
    pools: list[str],
    app_pools: frozenset[str],
    states: list[EndpointState],
    targets: Verdict,
    rules: Verdict,
    young: bool,
) -> Judgement:
    """Ready and Degraded from the check of a resource against the Prometheus at ``url``:
    the scrape ``pools`` of its ServiceMonitors (``app_pools`` the app's), where each of its
    endpoints stands (``states``), the TargetsHealthy and RulesLoaded verdicts drawn from
    them, and whether the resource is ``young`` (within ``grace_seconds`` of its creation:
    what may only be not there yet is waited for).

    Ready follows the app's targets (an exporter alone scraped monitors no app); every
    target's problems go to Degraded."""
    problems = _problems(states, young)
    degraded = _problem(targets, _fix(problems, app_pools)) if problems else None
    if not pools:
        nothing = f"Prometheus at {url} scrapes nothing of this resource: {targets.message}"
        return Judgement(Verdict("False", targets.reason, nothing), degraded)
    judged = sorted(app_pools) or pools
    judged_states = [s for s in states if s.pool in judged]
    if not any(s.state == UP for s in judged_states):
        judged_problems = _problems(judged_states, young)
        if young and not judged_problems:
            pending = (
                targets_healthy(url, judged, judged_states).message
                if judged_states
                else "its Services have no endpoints yet"
            )
            waiting = f"waiting for the first scrape by Prometheus at {url}: {pending}"
            return Judgement(Verdict("False", WAITING_FOR_SCRAPE, waiting), degraded)
        why = targets_healthy(url, judged, judged_states)
        fix = _fix(judged_problems, app_pools) if judged_problems else f" ({DOCTOR})"
        what = "of the app " if app_pools else ""
        message = f"no target {what}is scraped by Prometheus at {url}: {why.message}{fix}"
        return Judgement(
            Verdict("False", why.reason, message), degraded or Verdict("True", why.reason, message)
        )
    if rules.reason == "RulesNotLoaded":
        if young:
            waiting = f"waiting for Prometheus: {rules.message}"
            return Judgement(Verdict("False", WAITING_FOR_RULES, waiting), degraded)
        return Judgement(Verdict("False", rules.reason, rules.message), degraded or _problem(rules))
    if rules.reason == "RuleEvaluationFailing":
        degraded = degraded or _problem(rules)
    up = tally(states)[UP]
    see = "; see Degraded" if degraded else ""
    return Judgement(
        Verdict(
            "True",
            MONITORED,
            f"Prometheus at {url} scrapes {up} of {len(states)} targets; {rules.message}{see}",
        ),
        degraded,
    )


def _problems(states: list[EndpointState], young: bool) -> list[EndpointState]:
    """The endpoints surely not scraped: not up, and (for a ``young`` resource) not only
    waiting to be discovered or scraped for the first time."""
    return [s for s in states if s.state != UP and not (young and s.lagging)]
