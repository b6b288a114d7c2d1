"""Will a Prometheus actually pick our ServiceMonitors and PrometheusRule up, and an
Alertmanager our AlertmanagerConfig?

prometheus-operator only loads objects that a Prometheus (Alertmanager) resource selects, by
label (``serviceMonitorSelector``, ``ruleSelector``, ``alertmanagerConfigSelector``) and by
namespace (the matching ``...NamespaceSelector``). An object nobody selects is silently
ignored, which is the most common way a monitoring setup "works" and collects nothing. This
module evaluates those selectors exactly as prometheus-operator does and explains the
outcome. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Selecting:
    """A prometheus-operator resource that loads our objects only if its selectors pick them."""

    kind: str  # "Prometheus"
    crd: str  # its CustomResourceDefinition's name
    # our object's kind -> (label selector field, namespace selector field) on that resource
    fields: dict[str, tuple[str, str]]
    labels_from: str  # the spec field that sets our objects' labels, for the hint
    # Why a resource that selects an object still rejects it (None: it does not).
    rejects: Callable[[Obj, Obj], str | None] = lambda resource, obj: None
    # The other fields of its spec that ``rejects`` or the operator reads (a Prometheus's
    # routePrefix: where its HTTP API is, see which_prometheus).
    other_reads: tuple[str, ...] = ()

    @property
    def spec_fields(self) -> tuple[str, ...]:
        """Every field of the resource's spec that the operator reads: all a cache keeps."""
        selectors = tuple(field for pair in self.fields.values() for field in pair)
        return (*selectors, *self.other_reads)


# Receiver integrations prometheus-operator refuses to render for an older Alertmanager: it
# then rejects the whole AlertmanagerConfig (an event on it, nothing routed).
MIN_ALERTMANAGER_VERSIONS = {"msteamsv2Configs": (0, 28, 0)}


def _too_old_for(alertmanager: Obj, config: Obj) -> str | None:
    """The integration of ``config`` that ``alertmanager``'s spec.version cannot run.

    An unset version is prometheus-operator's default Alertmanager, recent enough."""
    version = alertmanager.get("spec", {}).get("version") or ""
    found = re.match(r"v?(\d+)\.(\d+)\.(\d+)", version)
    if found is None:
        return None
    have = tuple(int(part) for part in found.groups())
    used = {field for receiver in config.get("spec", {}).get("receivers", []) for field in receiver}
    for field, needed in MIN_ALERTMANAGER_VERSIONS.items():
        if field in used and have < needed:
            return (
                f"{config['kind']} {config['metadata']['name']} uses {field}, which needs "
                f"Alertmanager >= {'.'.join(map(str, needed))} but its spec.version is "
                f"{version}: prometheus-operator rejects the whole config"
            )
    return None


PROMETHEUS = Selecting(
    "Prometheus",
    "prometheuses.monitoring.coreos.com",
    {
        "ServiceMonitor": ("serviceMonitorSelector", "serviceMonitorNamespaceSelector"),
        "PrometheusRule": ("ruleSelector", "ruleNamespaceSelector"),
    },
    "spec.monitorLabels",
    other_reads=("routePrefix",),
)
ALERTMANAGER = Selecting(
    "Alertmanager",
    "alertmanagers.monitoring.coreos.com",
    {"AlertmanagerConfig": ("alertmanagerConfigSelector", "alertmanagerConfigNamespaceSelector")},
    "spec.routing.alertmanagerConfigLabels",
    _too_old_for,
    ("version",),
)
# Every kind of resource that selects ours.
SELECTING = {selecting.kind: selecting for selecting in (PROMETHEUS, ALERTMANAGER)}


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
    """A SelectedByPrometheus (or SelectedByAlertmanager) condition's status, reason, message."""

    status: str
    reason: str
    message: str
    # Labels whose addition to spec.monitorLabels makes the first Prometheus that lacks only
    # labels select everything (for a fix a tool can print as a command).
    missing_labels: tuple[str, ...] = ()


def evaluate(
    prometheuses: list[Obj],
    objects: list[Obj],
    namespace_labels: dict[str, dict[str, str]],
    selecting: Selecting = PROMETHEUS,
) -> Selection:
    """Whether one of ``prometheuses`` (resources of ``selecting.kind``) selects all of our
    ``objects`` of the kinds it loads (ServiceMonitors and PrometheusRule by default)."""
    kind = selecting.kind
    monitored = [obj for obj in objects if obj["kind"] in selecting.fields]
    if not monitored:
        return Selection("Unknown", "NothingToSelect", f"no {' or '.join(selecting.fields)}")
    if not prometheuses:
        return Selection("Unknown", f"No{kind}", f"no {kind} resource in the cluster")
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
            label_field, namespace_field = selecting.fields[obj["kind"]]
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
                    f"add {', '.join(missing)} to {selecting.labels_from}"
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
            elif rejected := selecting.rejects(prometheus, obj):
                problems.append(rejected)
                only_labels = False
        if not problems:
            return Selection("True", "Selected", f"{kind} {who} selects all our objects")
        hints.append(f"{kind} {who}: " + "; ".join(sorted(set(problems))))
        if only_labels and not fix:
            fix = tuple(sorted(missing_here))
    return Selection("False", "NotSelected", " | ".join(hints), fix)
