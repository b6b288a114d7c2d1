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

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    last_transition_time: str = ""
    observed_generation: int = 0


class ChildRef(SpecModel):
    """One object the operator created for this resource."""

    api_version: str
    kind: str
    name: str


class JewelryMonitoringStatus(SpecModel):
    observed_generation: int = 0
    conditions: list[Condition] = Field(default_factory=list)
    children: list[ChildRef] = Field(default_factory=list)
    exporters: str = Field("", description="Enabled exporters, comma-separated.")


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
