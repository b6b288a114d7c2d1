"""The desired state of one JewelryMonitoring: every child object, ready to apply.

This is the single entry point from a validated spec to objects; the reconciler applies what
it returns and the offline ``render`` command prints it, so the two can never disagree.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from jewelry_monitoring.builders.app import app_objects
from jewelry_monitoring.builders.common import (
    DASHBOARD_COMPONENT,
    RULES_COMPONENT,
    SPEC_HASH_ANNOTATION,
    Obj,
    Owner,
    child_name,
    metadata,
    monitor_metadata,
)
from jewelry_monitoring.builders.dashboards import (
    alert_dashboard_urls,
    dashboard_json,
    dashboards,
    file_name,
)
from jewelry_monitoring.builders.exporters import exporter_objects
from jewelry_monitoring.builders.routing import alertmanager_config_objects
from jewelry_monitoring.builders.rules import rule_groups
from jewelry_monitoring.config import PLAIN_EXPORTER_PODS, ExporterPods
from jewelry_monitoring.spec import JewelryMonitoringSpec

# Kinds that exist only when prometheus-operator's CRDs are installed, by CRD name.
MONITORING_KINDS = {
    "ServiceMonitor": "servicemonitors.monitoring.coreos.com",
    "PrometheusRule": "prometheusrules.monitoring.coreos.com",
    "AlertmanagerConfig": "alertmanagerconfigs.monitoring.coreos.com",
}
# Kinds of children that a spec change can remove, so pruning knows where to look. The
# PrometheusRule is not among them: every JewelryMonitoring has exactly one, for its lifetime.
PRUNABLE_KINDS = (
    "Deployment",
    "Service",
    "ConfigMap",
    "ServiceMonitor",
    "AlertmanagerConfig",
    "NetworkPolicy",
)
# Every kind of child: the operator watches these (only ours, by label, server-side) and
# finds a resource's children among them.
CHILD_KINDS = (*PRUNABLE_KINDS, "PrometheusRule")


def needed_monitoring_kinds(spec: JewelryMonitoringSpec) -> frozenset[str]:
    """The prometheus-operator kinds this spec makes: a missing CRD of another kind is no
    reason to be degraded."""
    return frozenset(MONITORING_KINDS) - (set() if spec.routing else {"AlertmanagerConfig"})


def _prometheus_rule(owner: Owner) -> list[Obj]:
    return [
        {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": monitor_metadata(owner, RULES_COMPONENT),
            "spec": {"groups": rule_groups(owner, alert_dashboard_urls(owner))},
        }
    ]


def _dashboard_config_maps(owner: Owner) -> list[Obj]:
    settings = owner.spec.dashboards
    if not settings.enabled:
        return []
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata(
                owner,
                DASHBOARD_COMPONENT,
                name=child_name(owner.name, f"dashboard-{slug}"),
                labels=settings.labels,
                annotations={settings.folder_annotation: settings.folder, **settings.annotations},
            ),
            "data": {file_name(model): dashboard_json(model)},
        }
        for slug, model in dashboards(owner).items()
    ]


# etcd stores an object of at most 1.5 MiB (--max-request-bytes); the server adds
# managedFields and metadata to what we send, so we keep our part to 1 MiB. A ConfigMap's
# data may not exceed 1 MiB either.
MAX_OBJECT_BYTES = 1024 * 1024
MAX_CONFIG_MAP_DATA_BYTES = 1024 * 1024
# Which part of the spec makes an object of a kind large.
_GROWS_WITH = {"PrometheusRule": "extraRuleGroups", "ConfigMap": "dashboards"}


def size_problems(objects: list[Obj]) -> list[str]:
    """Objects too large for the API server, each naming the spec field that makes it so:
    applying them would fail on every retry."""
    problems = []
    for obj in objects:
        size = len(json.dumps(obj, separators=(",", ":")).encode())
        data = sum(len(value.encode()) for value in obj.get("data", {}).values())
        limit, measured = MAX_OBJECT_BYTES, size
        if data > MAX_CONFIG_MAP_DATA_BYTES:
            limit, measured = MAX_CONFIG_MAP_DATA_BYTES, data
        if measured > limit:
            field = _GROWS_WITH.get(obj["kind"], "spec")
            problems.append(
                f"{field}: {obj['kind']} {obj['metadata']['name']} would be {measured} bytes, "
                f"more than the {limit} it may have: make {field} smaller"
            )
    return problems


def without_empty(value: Any) -> Any:
    """Drop empty maps and lists recursively: the API server does not store them in built-in
    kinds, so keeping them would make a freshly applied object look different from what we
    want forever.

    Only where empty means the same as absent: the builders spell out what an empty value
    would mean otherwise (every namespace is ``exporters.ALL_NAMESPACES``, never ``{}``), and
    an object's top-level fields are kept (``desired_objects``: a PrometheusRule's ``spec``
    is required even when it has no groups)."""
    if isinstance(value, dict):
        cleaned = {k: without_empty(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [without_empty(item) for item in value]
    return value


def spec_hash(obj: Obj) -> str:
    """A digest of everything we set on an object, stamped on it to notice spec changes."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def desired_objects(
    owner: Owner,
    monitoring_kinds: frozenset[str],
    exporter_pods: ExporterPods = PLAIN_EXPORTER_PODS,
) -> list[Obj]:
    """All children for ``owner``; prometheus-operator's kinds only if their CRDs exist."""
    objects = [
        *app_objects(owner),
        *exporter_objects(owner, exporter_pods),
        *_prometheus_rule(owner),
        *_dashboard_config_maps(owner),
        *alertmanager_config_objects(owner),
    ]
    result = []
    for obj in objects:
        if obj["kind"] in MONITORING_KINDS and obj["kind"] not in monitoring_kinds:
            continue
        cleaned = {field: without_empty(value) for field, value in obj.items()}
        cleaned["metadata"].setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = spec_hash(cleaned)
        result.append(cleaned)
    return result
