"""Are our rules loaded and evaluating, and can each of our alerts fire? Pure judgements of
what Prometheus reports, for the RulesLoaded and AlertsCanFire conditions and for doctor.

A PrometheusRule that exists is not a rule Prometheus evaluates: prometheus-operator may not
select it, or not yet have rewritten the rule files, and Prometheus may fail to evaluate a
rule. And an evaluating alert can still never fire when a series it needs never exists:
``django_migrations_unapplied_total`` only exists with PROMETHEUS_EXPORT_MIGRATIONS, Celery's
task counters only with task events. ``promql.needs`` says which series each alert needs; one
query says which exist for our jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jewelry_monitoring.promql import Atom, Needs, PromQLError, expand, needs
from jewelry_monitoring.targets import Verdict

Obj = dict[str, Any]
# Problems named in a condition message; the rest are counted (doctor lists all).
LISTED = 5


def rule_groups_of(objects: list[Obj]) -> list[Obj]:
    """The rule groups of our PrometheusRule (none without one)."""
    return [
        group
        for obj in objects
        if obj["kind"] == "PrometheusRule"
        for group in obj["spec"].get("groups") or []
    ]


def _ours(wanted: list[str], loaded: list[Obj], rule_file: str) -> dict[str, Obj]:
    """The loaded groups named like ours; of several with one name (another file's), the one
    whose file is our PrometheusRule's (prometheus-operator names it <namespace>-<name>-…)."""
    found: dict[str, Obj] = {}
    for group in loaded:
        name = str(group.get("name", ""))
        if name in wanted and (name not in found or rule_file in str(group.get("file", ""))):
            found[name] = group
    return found


def rules_loaded(
    url: str, wanted: list[str], loaded: list[Obj], rule_file: str, not_selected: str = ""
) -> Verdict:
    """RulesLoaded: every group of our PrometheusRule is loaded in the Prometheus at ``url``
    and its last evaluation had no error. ``not_selected`` is why Prometheus may not load our
    PrometheusRule at all (SelectedByPrometheus' message when it is not True)."""
    if not wanted:
        return Verdict("Unknown", "NoRules", "this resource has no rule group")
    ours = _ours(wanted, loaded, rule_file)
    missing = [name for name in wanted if name not in ours]
    if missing:
        why = not_selected or (
            "prometheus-operator has not put our PrometheusRule in its rule files (yet), or "
            "does not select it"
        )
        return Verdict(
            "False",
            "RulesNotLoaded",
            f"{len(missing)} of {len(wanted)} rule groups are not loaded in Prometheus at "
            f"{url}: {', '.join(missing[:LISTED])}{' …' if len(missing) > LISTED else ''}: {why}",
        )
    failing = [
        f"{name}/{rule.get('name', '')}: {rule.get('lastError', '')}"
        for name, group in ours.items()
        for rule in group.get("rules") or []
        if rule.get("health") == "err"
    ]
    if failing:
        more = f"; and {len(failing) - LISTED} more" if len(failing) > LISTED else ""
        return Verdict(
            "False",
            "RuleEvaluationFailing",
            f"{len(failing)} rules fail to evaluate: {'; '.join(failing[:LISTED])}{more}",
        )
    rules = [rule for group in ours.values() for rule in group.get("rules") or []]
    if any(rule.get("health") == "unknown" for rule in rules):
        return Verdict(
            "Unknown", "NotEvaluatedYet", f"{len(wanted)} rule groups loaded, not all evaluated yet"
        )
    return Verdict(
        "True",
        "Evaluating",
        f"{len(wanted)} rule groups ({len(rules)} rules) loaded, evaluating without errors",
    )


@dataclass(frozen=True)
class Family:
    """Series that exist only when something is enabled in the app (or its Celery): once it
    is, ``marker`` exists (``at_start``: from the first scrape on; else from the first use:
    a query, a cache read, a task), and every series of the family appears with its first
    event. So a missing marker says the feature is off, or (not ``at_start``) unused yet."""

    prefix: str
    marker: str
    enable: str
    at_start: bool


FAMILIES = (
    Family(
        "django_migrations_",
        "django_migrations_unapplied_total",
        "set PROMETHEUS_EXPORT_MIGRATIONS = True in the Django settings",
        at_start=True,
    ),
    Family(
        "django_http_",
        "django_http_requests_before_middlewares_total",
        "put django_prometheus's PrometheusBeforeMiddleware first and "
        "jewelry_monitoring_django's PrometheusAfterMiddleware last in MIDDLEWARE",
        at_start=True,
    ),
    Family(
        "celery_task_",
        "celery_task_received_total",
        "turn on Celery task events: worker_send_task_events = True and "
        "task_send_sent_event = True in the Celery configuration (or start workers with -E)",
        at_start=False,
    ),
    Family(
        "django_cache_",
        "django_cache_get_total",
        "use a jewelry_monitoring_django.cache backend in CACHES",
        at_start=False,
    ),
    Family(
        "django_db_",
        "django_db_new_connections_total",
        "use a django_prometheus.db.backends ENGINE in DATABASES",
        at_start=False,
    ),
)


def _family(metric: str) -> Family | None:
    return next((f for f in FAMILIES if metric.startswith(f.prefix)), None)


@dataclass(frozen=True)
class Blocked:
    """Why an alert cannot fire now; ``certain`` False when the feature it needs may only
    be unused yet (no query, no cache read, no task since the app started)."""

    why: str
    certain: bool

    @property
    def text(self) -> str:
        return self.why if self.certain else f"not seen yet: {self.why}"


def alert_needs(groups: list[Obj]) -> dict[str, Needs]:
    """What each alert of ``groups`` needs to fire, recorded series replaced by their inputs
    (rules sharing an alert name: any of them firing is enough)."""
    records: dict[str, Needs] = {}
    alerts: dict[str, Needs] = {}
    for group in groups:
        for rule in group.get("rules") or []:
            try:
                needed = expand(needs(str(rule.get("expr", ""))), records)
            except PromQLError:
                continue  # Prometheus refuses it: RulesLoaded says so
            if "record" in rule:
                records[rule["record"]] = records.get(rule["record"], frozenset()) | needed
            elif "alert" in rule:
                alerts[rule["alert"]] = alerts.get(rule["alert"], frozenset()) | needed
    return alerts


def series_query(namespace: str, jobs: list[str], alerts: dict[str, Needs]) -> str | None:
    """One query for which of the series our alerts need exist, by name and job (None when
    no alert needs any)."""
    names = {
        name for needed in alerts.values() for alternative in needed for name, _ in alternative
    }
    names |= {f.marker for name in names if (f := _family(name)) is not None}
    if not names or not jobs:
        return None
    return (
        f'count by (__name__, job) ({{namespace="{namespace}",job=~"{"|".join(sorted(jobs))}",'
        f'__name__=~"{"|".join(sorted(names))}"}})'
    )


def present(answer: list[Obj]) -> set[Atom]:
    return {(s["metric"].get("__name__", ""), s["metric"].get("job", "")) for s in answer}


def _missing(atom: Atom, have: set[Atom], scraped: set[str] | None) -> Blocked | None:
    """Why ``atom`` is missing, or None if it exists or will with its first event.
    ``scraped``: the jobs of which a scrape succeeds (None: not known); of any other job
    nothing can be said."""
    name, job = atom
    jobs = {j for _, j in have} if not job else {job}
    if any((name, j) in have for j in jobs):
        return None
    source = f" from job {job}" if job else ""
    if job and scraped is not None and job not in scraped:
        return Blocked(f"job {job} is not scraped successfully (see TargetsHealthy)", False)
    family = _family(name)
    if family is None:
        return Blocked(f"no series {name}{source}", certain=True)
    if any((family.marker, j) in have for j in jobs):
        return None  # enabled: it appears with its first event
    unused = "" if family.at_start else " (or it was not used since the app started)"
    return Blocked(f"no {family.marker}{source}: {family.enable}{unused}", family.at_start)


def cannot_fire(
    alerts: dict[str, Needs], have: set[Atom], scraped: set[str] | None = None
) -> dict[str, Blocked]:
    """The alerts none of whose alternatives can be met, with what is missing of the one
    closest to it (certain if anything missing there surely is); ``scraped`` as for
    ``_missing``."""
    found = {}
    for alert, needed in sorted(alerts.items()):
        reasons: list[list[Blocked]] = []
        for alternative in needed:
            missing = {why for atom in alternative if (why := _missing(atom, have, scraped))}
            if not missing:
                break
            reasons.append(sorted(missing, key=lambda b: b.why))
        else:
            if reasons:
                closest = min(reasons, key=len)
                found[alert] = Blocked(
                    "; ".join(b.why for b in closest), any(b.certain for b in closest)
                )
    return found


def alerts_can_fire(alerts: dict[str, Needs], blocked: dict[str, Blocked]) -> Verdict:
    """AlertsCanFire from ``cannot_fire``'s answer: False when an input surely is missing,
    Unknown when one may only be unused yet."""
    if not alerts:
        return Verdict("Unknown", "NoAlerts", "this resource has no alerting rule")
    if not blocked:
        return Verdict(
            "True", "InputsPresent", f"all {len(alerts)} alerts have the series they need"
        )
    ordered = sorted(blocked.items(), key=lambda item: not item[1].certain)
    listed = "; ".join(f"{alert} ({b.text})" for alert, b in ordered[:LISTED])
    more = f"; and {len(blocked) - LISTED} more" if len(blocked) > LISTED else ""
    certain = sum(1 for b in blocked.values() if b.certain)
    if certain:
        return Verdict(
            "False",
            "InputsMissing",
            f"{certain} of {len(alerts)} alerts cannot fire: {listed}{more}",
        )
    return Verdict(
        "Unknown",
        "InputsNotSeenYet",
        f"{len(blocked)} of {len(alerts)} alerts have no input yet: {listed}{more}",
    )
