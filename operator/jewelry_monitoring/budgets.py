"""Error budgets as Prometheus records them, for ``status.slos``, the BUDGET column and the
ErrorBudgetLeft condition. Pure.

The SLO recording rules (``builders/rules.py``) hold the SLI over the SLO window, the budget
it leaves and the error ratio over each alerting window; one query reads them all for a
resource. Values are written to the status only when they move by a meaningful step (a
percentage point of the budget, a tenth of a burn rate), so that a check every minute does
not rewrite the status every minute.
"""

from __future__ import annotations

import math
from typing import Any

from jewelry_monitoring.builders.rules import (
    error_budget,
    slo_budget_remaining_record,
    slo_error_ratio_record,
    slo_objectives,
    slo_windows,
)
from jewelry_monitoring.spec import JewelryMonitoringSpec
from jewelry_monitoring.status import SLOStatus
from jewelry_monitoring.targets import Verdict

Obj = dict[str, Any]
# Percentage points of the budget a value must move by before the status is written again.
BUDGET_STEP = 1.0
# A burn rate is written again when it moves by a tenth of itself, and at least by this.
BURN_RATE_STEP = 0.05


def objectives(spec: JewelryMonitoringSpec) -> dict[str, float]:
    """The SLOs recorded for a resource (none without the app), by kind."""
    return slo_objectives(spec) if spec.app.enabled else {}


def slo_query(namespace: str, job: str) -> str:
    """Every SLO series recorded for one app job."""
    return f'{{__name__=~"job:jewelry_slo_.+",namespace="{namespace}",job="{job}"}}'


def _values(series: list[Obj]) -> dict[str, float]:
    values = {}
    for sample in series:
        value = float(sample["value"][1])
        if math.isfinite(value):
            values[sample["metric"].get("__name__", "")] = value
    return values


def _moved(new: float | None, old: float | None, step: float) -> bool:
    """Whether ``new`` is worth writing over ``old``: the status changes only by steps."""
    return new is None or old is None or abs(new - old) >= step


def _burn_rate(new: float, old: float | None) -> float:
    step = max(BURN_RATE_STEP, 0.1 * abs(old or 0.0))
    return new if old is None or _moved(new, old, step) else old


def slo_statuses(
    spec: JewelryMonitoringSpec, series: list[Obj], previous: list[SLOStatus]
) -> list[SLOStatus]:
    """Each SLO's objective, SLI and budget left over the SLO window, and its burn rate over
    each recorded window, from ``series`` (the answer to ``slo_query``)."""
    values = _values(series)
    before = {slo.name: slo for slo in previous}
    window = spec.slos.window
    statuses = []
    for kind, objective in objectives(spec).items():
        budget = error_budget(objective)
        ratio = values.get(slo_error_ratio_record(kind, window))
        remaining = values.get(slo_budget_remaining_record(kind))
        sli = None if ratio is None else round(100 * (1 - ratio), 3)
        left = None if remaining is None else round(100 * remaining, 1)
        burn = {
            name: round(values[record] / budget, 2)
            for name in slo_windows(window)
            if (record := slo_error_ratio_record(kind, name)) in values
        }
        old = before.get(kind)
        if old is not None and old.objective == objective:
            if not _moved(left, old.budget_remaining, BUDGET_STEP):
                left, sli = old.budget_remaining, old.sli
            burn = {name: _burn_rate(rate, old.burn_rates.get(name)) for name, rate in burn.items()}
        statuses.append(
            SLOStatus(
                name=kind, objective=objective, sli=sli, budget_remaining=left, burn_rates=burn
            )
        )
    return statuses


def budget_column(slos: list[SLOStatus]) -> str:
    """The budget left of the SLO with the least, as the BUDGET column shows it."""
    left = [slo.budget_remaining for slo in slos if slo.budget_remaining is not None]
    return f"{min(left):.0f}%" if left else ""


def error_budget_left(spec: JewelryMonitoringSpec, slos: list[SLOStatus]) -> Verdict:
    """ErrorBudgetLeft: False once an SLO's budget over its window is spent."""
    if not objectives(spec):
        return Verdict("Unknown", "NoSLOs", "spec.slos sets no objective")
    known = [slo for slo in slos if slo.budget_remaining is not None]
    if not known:
        return Verdict(
            "Unknown",
            "NoData",
            "no SLO series yet: no traffic in the SLO window, or the rules are not loaded "
            "(see RulesLoaded)",
        )
    window = spec.slos.window
    spent = [slo for slo in known if (slo.budget_remaining or 0) <= 0]
    if spent:
        return Verdict(
            "False",
            "BudgetSpent",
            "; ".join(
                f"{slo.name}: SLI {slo.sli}% over {window} against {slo.objective}%, the error "
                f"budget is spent ({slo.budget_remaining:.0f}% left)"
                for slo in spent
            ),
        )
    return Verdict(
        "True",
        "WithinBudget",
        "; ".join(
            f"{slo.name}: {slo.budget_remaining:.0f}% of the error budget left over {window}"
            for slo in known
        ),
    )
