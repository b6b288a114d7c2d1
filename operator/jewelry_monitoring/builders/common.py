"""Names, labels and metadata shared by every object the operator builds."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from jewelry_monitoring.spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    JewelryMonitoringSpec,
    ScrapeLimits,
)

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


# A Service name (RFC 1035 label), the strictest name any child has; labels values allow 63.
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
MAX_LABEL = 63
_DIGEST = 8


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:_DIGEST]


def child_name(instance: str, component: str) -> str:
    """``<instance>-<component>`` when that is a valid Service name (RFC 1035 label, 63).

    Otherwise (a long name, one with dots or a leading digit: a resource may be named any DNS
    subdomain up to 253) it is made one, cut to 54 characters and followed by a hash of the
    whole: stable, and distinct for distinct resources however alike their names begin.
    """
    name = f"{instance}-{component}"
    if len(name) <= MAX_LABEL and _DNS_LABEL.fullmatch(name):
        return name
    safe = re.sub(r"[^a-z0-9-]", "-", name)
    if not safe[0].isalpha():
        safe = f"jm-{safe}"
    return f"{safe[: MAX_LABEL - _DIGEST - 1]}-{_digest(name)}"


def instance_label(instance: str) -> str:
    """The resource's name as a label value (at most 63 characters).

    A longer name is cut and joined to a hash of the whole with "_", which no resource name
    contains: the result can be neither another resource's name nor another long name's label.
    """
    if len(instance) <= MAX_LABEL:
        return instance
    return f"{instance[: MAX_LABEL - _DIGEST - 1]}_{_digest(instance)}"


def owner_selector(instance: str) -> str:
    """The label selector of every child of one resource."""
    return f"{OWNER_LABEL}={instance_label(instance)}"


def job_name(instance: str, component: str) -> str:
    """The Prometheus ``job`` label of a component: prometheus-operator uses the Service name."""
    return child_name(instance, component)


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    """The labels that pick one component's pods and Services; never changes for a component."""
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/instance": instance_label(owner.name),
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
        OWNER_LABEL: instance_label(owner.name),
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


def scrape_limit_fields(limits: ScrapeLimits) -> Obj:
    """A ServiceMonitor's limit fields; a limit of 0 (none) is left out, so that a
    Prometheus's own enforced limits, if any, apply."""
    fields = {
        "sampleLimit": limits.sample_limit,
        "labelLimit": limits.label_limit,
        "labelNameLengthLimit": limits.label_name_length_limit,
        "labelValueLengthLimit": limits.label_value_length_limit,
    }
    return {name: value for name, value in fields.items() if value}
