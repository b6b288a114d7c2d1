"""The alert catalogue (``charts/jewelry-monitoring/runbooks/README.md``): every alert the
repository ships, with its severity, ``for``, condition, the series it reads and what must be
enabled for them to exist, each linked to its runbook.

Generated from what the operator's rules builder and the chart render (a resource with every
part enabled, the node exporter's rules, the operator's own), with default thresholds;
``jm-dev manifests`` writes it and a test fails when the committed file differs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devkit.manifests import CHART, REGENERATE
from devkit.operator_process import render_chart
from devkit.prometheus import promql_metric_names
from jewelry_monitoring.builders.common import Owner
from jewelry_monitoring.builders.rules import REQUIREMENTS, node_exporter_rule_groups, rule_groups
from jewelry_monitoring.spec import JewelryMonitoringSpec

Rule = dict[str, Any]
CATALOGUE = CHART / "runbooks" / "README.md"
SECRET = {"name": "s", "key": "k"}
# A resource with everything on: every alert of a resource appears once.
EVERYTHING: dict[str, Any] = {
    "app": {"podSelector": {"app": "shop"}},
    "exporters": {
        "postgres": {"enabled": True, "dataSource": SECRET},
        "redis": {"enabled": True},
        "nginx": {"enabled": True},
        "celery": {"enabled": True, "brokerUrl": SECRET},
    },
    "slos": {"availability": {"objective": 99.9}, "latency": {"objective": 99}},
}
OPERATOR_REQUIRES = (
    "the chart's `metrics.serviceMonitor.enabled` and `metrics.prometheusRule.enabled`"
)
# Matchers that pick one job's series: the catalogue shows the condition without them.
_SCOPE = re.compile(r'(namespace="[^"]*",job="[^"]*"|job="[^"]*",namespace="[^"]*"),?')


@dataclass(frozen=True)
class Entry:
    """One alert as the catalogue lists it: severity, ``for`` and condition of each of its
    rules (one alert may have a warning and a critical rule), the series they read."""

    name: str
    source: str
    severities: tuple[str, ...]
    fors: tuple[str, ...]
    conditions: tuple[str, ...]
    reads: tuple[str, ...]
    requires: str
    summary: str


def _condition(expr: str) -> str:
    return " ".join(_SCOPE.sub("", expr).replace("{}", "").split())


def _raw_series(expr: str, recorded: dict[str, str]) -> set[str]:
    """The scraped series an expression needs, recording rules expanded to theirs."""
    names = set()
    for name in promql_metric_names(expr):
        names |= _raw_series(recorded[name], recorded) if name in recorded else {name}
    return names


def _entries(source: str, groups: list[dict[str, Any]], requires: Any) -> list[Entry]:
    rules = [rule for group in groups for rule in group["rules"]]
    recorded = {rule["record"]: rule["expr"] for rule in rules if "record" in rule}
    by_alert: dict[str, list[Rule]] = {}
    for rule in rules:
        if "alert" in rule:
            by_alert.setdefault(rule["alert"], []).append(rule)
    return [
        Entry(
            name=name,
            source=source,
            severities=tuple(r["labels"]["severity"] for r in alert_rules),
            fors=tuple(r.get("for", "0s") for r in alert_rules),
            conditions=tuple(_condition(r["expr"]) for r in alert_rules),
            reads=tuple(
                sorted(set().union(*(_raw_series(r["expr"], recorded) for r in alert_rules)))
            ),
            requires=requires(name),
            summary=" ".join(alert_rules[0]["annotations"]["summary"].split()),
        )
        for name, alert_rules in by_alert.items()
    ]


def _operator_groups() -> list[dict[str, Any]]:
    rendered = render_chart("jm", "jm-system", {"metrics.prometheusRule.enabled": True})
    (rule,) = [obj for obj in rendered if obj["kind"] == "PrometheusRule"]
    return list(rule["spec"]["groups"])


def catalogue_entries() -> list[Entry]:
    """Every alert of the repository: a resource's, the node exporter's, the operator's."""
    spec = JewelryMonitoringSpec.model_validate(EVERYTHING)
    resource = rule_groups(Owner("shop", "ns", "u", spec))
    node = node_exporter_rule_groups("ns", "node-exporter", "")
    return [
        *_entries("resource", resource, REQUIREMENTS.__getitem__),
        *_entries("node", node, REQUIREMENTS.__getitem__),
        *_entries("operator", _operator_groups(), lambda _: OPERATOR_REQUIRES),
    ]


def _cell(values: Iterable[str], code: bool = False) -> str:
    text = [f"`{value}`" if code else value for value in values]
    return "<br>".join(text).replace("|", "\\|")


SECTIONS = {
    "resource": (
        "A JewelryMonitoring's alerts",
        "Made by the operator for each resource (`builders/rules.py`), scoped to its own "
        "`namespace` and `job`; thresholds and `for` are the defaults, which "
        "`alerts.overrides.<alert>` changes.",
    ),
    "node": (
        "The node exporter's alerts",
        "Shipped with the chart's node exporter (`nodeExporter.prometheusRule.enabled`).",
    ),
    "operator": (
        "The operator's own alerts",
        "Shipped with the chart (`metrics.prometheusRule.enabled`), on the operator's metrics.",
    ),
}

HEADER = f"""\
<!-- GENERATED by `{REGENERATE}` from the rules the operator and the chart make: do not edit
by hand (the runbooks in the directories beside it are written by hand). -->
# Alerts and runbooks

Every alert this project ships, with one runbook each (in the directory named after the
alert, lower-cased): what it means, how to confirm it with PromQL, what to do. Every alert's
`runbook_url` is `<runbookUrlBase>/<alert lower-cased>`; the chart's `runbookUrlBase`
defaults to this directory in the project's repository (a resource's
`alerts.runbookUrlBase` replaces it for its alerts).

**Needs** is what must be enabled for the series an alert reads to exist: without it the
alert can never fire. **Reads** are the scraped series (recording rules expanded).
"""


def catalogue_markdown() -> str:
    entries = catalogue_entries()
    parts = [HEADER]
    for source, (title, intro) in SECTIONS.items():
        parts.append(f"\n## {title}\n\n{intro}\n\n")
        parts.append("| alert | severity | for | condition | reads | needs |\n")
        parts.append("|---|---|---|---|---|---|\n")
        for entry in (e for e in entries if e.source == source):
            link = f"[{entry.name}]({entry.name.lower()}/README.md)"
            parts.append(
                f"| {link}<br>{_cell([entry.summary])} | {_cell(entry.severities)} "
                f"| {_cell(entry.fors)} | {_cell(entry.conditions, code=True)} "
                f"| {_cell(entry.reads, code=True)} | {_cell([entry.requires])} |\n"
            )
    return "".join(parts)


def write_alert_catalogue(path: Path = CATALOGUE) -> Path:
    path.write_text(catalogue_markdown())
    return path
