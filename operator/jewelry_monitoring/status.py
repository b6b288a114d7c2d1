"""The JewelryMonitoring status: its typed shape and pure helpers to compute it.

The CRD's status schema is generated from ``JewelryMonitoringStatus``, so every field the
operator writes is declared and the API server never prunes it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from jewelry_monitoring.spec import SpecModel

ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(SpecModel):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: str = Field(description="What the condition is about, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(description="One CamelCase word for why, e.g. InvalidSpec.")
    message: str = Field("", description="What is wrong and what to change, for a person.")
    last_transition_time: str = Field("", description="When status last changed (RFC 3339).")
    observed_generation: int = Field(
        0, description="The resource's generation the condition was computed for."
    )


class ChildRef(SpecModel):
    """One object the operator created for this resource."""

    api_version: str = Field(description="Its API version.")
    kind: str = Field(description="Its kind.")
    name: str = Field(description="Its name, in this resource's namespace.")


class SLOStatus(SpecModel):
    """One SLO as Prometheus' recording rules last reported it. Written only when a value
    moved by a meaningful step (see ``budgets``), not at every check."""

    name: str = Field(description="availability or latency.")
    objective: float = Field(description="The objective, in percent.")
    sli: float | None = Field(
        None, description="The SLI over the SLO window, in percent (none without traffic)."
    )
    budget_remaining: float | None = Field(
        None,
        description="Percent of the error budget left over the SLO window (below 0: overspent).",
    )
    burn_rates: dict[str, float] = Field(
        default_factory=dict,
        description="Burn rate per recorded window: how many times faster than the SLO "
        "window allows the budget is spent (1: exactly spent at its end).",
    )


class TargetsStatus(SpecModel):
    """The endpoints of this resource's Services as Prometheus sees them."""

    endpoints: int = Field(0, description="Endpoints (address and port) of our Services.")
    up: int = Field(0, description="Scraped successfully at the last scrape.")
    failing: int = Field(0, description="Scraped, but the scrape fails.")
    dropped: int = Field(0, description="Discovered, but dropped by relabeling.")
    not_discovered: int = Field(0, description="Not among Prometheus' targets at all.")
    not_scraped_yet: int = Field(0, description="Discovered, not scraped yet.")
    problems: list[str] = Field(
        default_factory=list,
        description="The first few endpoints that are not up, each with why; "
        "`jewelry-monitoring doctor` lists all.",
    )


class JewelryMonitoringStatus(SpecModel):
    """What the operator made of the resource, and whether monitoring works."""

    observed_generation: int = Field(
        0, description="The generation of the spec the operator last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready (True/Monitored only once the Prometheus the operator asks "
        "scrapes the app and has loaded the rules; True/ScrapingUnverified when none is "
        "named; Unknown when the one named cannot be asked; else False with why and what to "
        "change), Degraded, SelectedByPrometheus, SelectedByAlertmanager, ExportersAvailable, "
        "AppTargetsFound and TargetsHealthy.",
    )
    children: list[ChildRef] = Field(
        default_factory=list, description="Every object the operator created for it."
    )
    exporters: str = Field("", description="Enabled exporters, comma-separated.")
    budget: str = Field(
        "", description="Error budget left of the SLO with the least, e.g. 87% (the BUDGET column)."
    )
    slos: list[SLOStatus] = Field(
        default_factory=list,
        description="Each SLO's state as Prometheus records it (with a Prometheus to ask).",
    )
    targets: TargetsStatus | None = Field(
        None, description="Our endpoints as Prometheus sees them (with a Prometheus to ask)."
    )
    alerts_that_cannot_fire: list[str] = Field(
        default_factory=list,
        description="Our alerts whose input series do not exist for this app, with what to "
        "enable (the first few; doctor lists all).",
    )


def merge_conditions(
    current: list[Condition], wanted: list[Condition], now: str
) -> list[Condition]:
    """``wanted`` conditions with lastTransitionTime kept from ``current`` when status is unchanged.

    Keeping the old timestamp when nothing changed is what makes an idle reconcile produce an
    identical status, and so no write.
    """
    previous = {condition.type: condition for condition in current}
    merged = []
    for condition in wanted:
        before = previous.get(condition.type)
        stamp = (
            before.last_transition_time
            if before is not None and before.status == condition.status
            else now
        )
        merged.append(condition.model_copy(update={"last_transition_time": stamp}))
    return merged
