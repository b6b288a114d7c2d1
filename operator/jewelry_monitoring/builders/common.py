"""Names, labels and metadata shared by every object the operator builds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from jewelry_monitoring.spec import API_GROUP, API_VERSION, KIND, JewelryMonitoringSpec

PART_OF = "jewelry-monitoring"
MANAGED_BY = "jewelry-monitoring-operator"
# Our annotation/label prefix, chosen once: everything the operator stamps lives under it.
PREFIX = "monitoring.jewelry.io"
SPEC_HASH_ANNOTATION = f"{PREFIX}/spec-hash"
OWNER_LABEL = f"{PREFIX}/owner"

APP_COMPONENT = "app-metrics"
RULES_COMPONENT = "rules"
DASHBOARD_COMPONENT = "dashboard"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The JewelryMonitoring resource every child belongs to."""

    name: str
    namespace: str
    uid: str
    spec: JewelryMonitoringSpec

    def reference(self) -> Obj:
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def child_name(instance: str, component: str) -> str:
    """``<instance>-<component>``, shortened with a hash to stay a valid DNS label (63)."""
    name = f"{instance}-{component}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: 63 - 9]}-{digest}"


def job_name(instance: str, component: str) -> str:
    """The Prometheus ``job`` label of a component: prometheus-operator uses the Service name."""
    return child_name(instance, component)


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    """The labels that pick one component's pods and Services; never changes for a component."""
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": owner.name,
    }


def standard_labels(owner: Owner, component: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels and the user's commonLabels. The user's
    ``part-of`` wins over ours; the labels we select by cannot be set (see OPERATOR_LABELS)."""
    return {
        "app.kubernetes.io/part-of": PART_OF,
        **owner.spec.common_labels,
        **selector_labels(owner, component),
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        OWNER_LABEL: owner.name,
    }


def metadata(
    owner: Owner,
    component: str,
    name: str | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Obj:
    """Metadata of a child: name, namespace, labels, annotations, controller ownerReference."""
    return {
        "name": name or child_name(owner.name, component),
        "namespace": owner.namespace,
        "labels": {**standard_labels(owner, component), **(labels or {})},
        "annotations": {**owner.spec.common_annotations, **(annotations or {})},
        "ownerReferences": [owner.reference()],
    }


def monitor_metadata(owner: Owner, component: str) -> Obj:
    """Metadata of a ServiceMonitor or PrometheusRule: also carries ``monitorLabels``."""
    return metadata(owner, component, labels=owner.spec.monitor_labels)
