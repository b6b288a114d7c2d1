"""Will a Prometheus actually pick our ServiceMonitors and PrometheusRule up?

prometheus-operator only loads objects that a Prometheus resource selects, by label
(``serviceMonitorSelector``, ``ruleSelector``) and by namespace (the matching
``...NamespaceSelector``). An object nobody selects is silently ignored, which is the most
common way a monitoring setup "works" and collects nothing. This module evaluates those
selectors exactly as prometheus-operator does and explains the outcome. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# kind -> (label selector field, namespace selector field) on a Prometheus resource
SELECTOR_FIELDS = {
    "ServiceMonitor": ("serviceMonitorSelector", "serviceMonitorNamespaceSelector"),
    "PrometheusRule": ("ruleSelector", "ruleNamespaceSelector"),
}


def matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """Kubernetes LabelSelector semantics; ``None`` selects nothing, ``{}`` everything."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _missing_labels(selector: Obj, labels: dict[str, str]) -> list[str]:
    """The matchLabels an object would need to add to be selected (for the hint)."""
    return [
        f"{key}={value}"
        for key, value in (selector.get("matchLabels") or {}).items()
        if labels.get(key) != value
    ]


def _namespace_selected(
    prometheus: Obj, selector_field: str, namespace: str, namespace_labels: dict[str, str]
) -> bool:
    selector = prometheus.get("spec", {}).get(selector_field)
    if selector is None:  # prometheus-operator: unset means "only my own namespace"
        return bool(prometheus["metadata"]["namespace"] == namespace)
    return matches(selector, namespace_labels)


@dataclass(frozen=True)
class Selection:
    """The SelectedByPrometheus condition's status, reason and message."""

    status: str
    reason: str
    message: str
    # Labels whose addition to spec.monitorLabels makes the first Prometheus that lacks only
    # labels select everything (for a fix a tool can print as a command).
    missing_labels: tuple[str, ...] = ()


def evaluate(
    prometheuses: list[Obj], objects: list[Obj], namespace_labels: dict[str, dict[str, str]]
) -> Selection:
    """Whether one Prometheus selects all ``objects`` (our ServiceMonitors and PrometheusRule)."""
    monitored = [obj for obj in objects if obj["kind"] in SELECTOR_FIELDS]
    if not monitored:
        return Selection("Unknown", "NothingToSelect", "no ServiceMonitor or PrometheusRule")
    if not prometheuses:
        return Selection("Unknown", "NoPrometheus", "no Prometheus resource in the cluster")
    hints = []
    fix: tuple[str, ...] = ()
    for prometheus in sorted(
        prometheuses, key=lambda p: (p["metadata"]["namespace"], p["metadata"]["name"])
    ):
        who = f"{prometheus['metadata']['namespace']}/{prometheus['metadata']['name']}"
        problems = []
        missing_here: set[str] = set()
        only_labels = True
        for obj in monitored:
            label_field, namespace_field = SELECTOR_FIELDS[obj["kind"]]
            meta = obj["metadata"]
            labels = meta.get("labels", {})
            selector = prometheus.get("spec", {}).get(label_field)
            if selector is None:
                problems.append(f"it has no {label_field}, so it selects no {obj['kind']}")
                only_labels = False
            elif not matches(selector, labels):
                missing = _missing_labels(selector, labels)
                missing_here.update(missing)
                only_labels = only_labels and bool(missing)
                need = (
                    f"add {', '.join(missing)} to spec.monitorLabels"
                    if missing
                    else f"they do not match its {label_field}"
                )
                problems.append(f"{obj['kind']} {meta['name']} is not selected: {need}")
            elif not _namespace_selected(
                prometheus,
                namespace_field,
                meta["namespace"],
                namespace_labels.get(meta["namespace"], {}),
            ):
                problems.append(f"namespace {meta['namespace']} is outside its {namespace_field}")
                only_labels = False
        if not problems:
            return Selection("True", "Selected", f"Prometheus {who} selects all our objects")
        hints.append(f"Prometheus {who}: " + "; ".join(sorted(set(problems))))
        if only_labels and not fix:
            fix = tuple(sorted(missing_here))
    return Selection("False", "NotSelected", " | ".join(hints), fix)
