"""Every alert the repository ships has a runbook, every runbook_url points at it, and the
alert catalogue is the generated one.

The alerts are those of a resource (``builders/rules.py``: the catalog and the SLO alerts),
the chart's node exporter (``rules/node-exporter.yaml``) and the operator's own
(``templates/metrics.yaml``), read from what the builders and the chart render.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from devkit.operator_process import render_chart
from devkit.prometheus import promql_metric_names, run_promtool
from jewelry_monitoring.builders.rules import KNOWN_ALERTS, NODE_CATALOG

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/jewelry-monitoring"
RUNBOOKS = CHART / "runbooks"
SECTIONS = ["## Meaning", "## Confirm", "## Act"]
EVERYTHING = {
    "nodeExporter.enabled": True,
    "nodeExporter.prometheusRule.enabled": True,
    "metrics.prometheusRule.enabled": True,
}


def chart_alert_rules(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The alerting rules of every PrometheusRule the chart renders with all of them on."""
    rendered = render_chart("jm", "jm-system", {**EVERYTHING, **(values or {})})
    return [
        rule
        for obj in rendered
        if obj["kind"] == "PrometheusRule"
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def runbook(alert: str) -> Path:
    return RUNBOOKS / alert.lower() / "README.md"


def test_every_alert_of_the_repository_has_a_runbook() -> None:
    alerts = KNOWN_ALERTS | {a.name for a in NODE_CATALOG}
    alerts |= {rule["alert"] for rule in chart_alert_rules()}
    assert {"JewelryMonitoringOperatorDown", "NodeMemoryLow", "HighErrorRate"} <= alerts
    missing = sorted(alert for alert in alerts if not runbook(alert).is_file())
    assert missing == [], f"write {[str(runbook(a).relative_to(REPO)) for a in missing]}"
    for alert in alerts:
        text = runbook(alert).read_text()
        assert text.startswith(f"# {alert}\n"), alert
        where = [text.find(f"\n{section}\n") for section in SECTIONS]
        assert -1 not in where and where == sorted(where), f"{alert}: sections {SECTIONS}"
    # No runbook of an alert that no longer exists.
    assert {p.parent.name for p in RUNBOOKS.glob("*/README.md")} == {a.lower() for a in alerts}


def _confirm_queries(alert: str) -> list[str]:
    text = runbook(alert).read_text()
    confirm = text.split("\n## Confirm\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```promql\n(.*?)```", confirm, flags=re.S)


def test_each_runbook_confirms_with_promql_that_prometheus_parses(tmp_path: Path) -> None:
    """Every ``promql`` block of a Confirm section parses (promtool checks rule files) and
    reads at least one series the alert itself reads."""
    from devkit.alert_catalogue import catalogue_entries

    rules = []
    for entry in catalogue_entries():
        queries = _confirm_queries(entry.name)
        assert queries, f"{entry.name}: no ```promql block under ## Confirm"
        read = set().union(*(promql_metric_names(q) for q in queries))
        assert read & set(entry.reads), f"{entry.name}: reads none of {entry.reads}"
        rules += [{"record": f"confirm:{entry.name}:{i}", "expr": q} for i, q in enumerate(queries)]
    (tmp_path / "confirm.yaml").write_text(
        yaml.safe_dump({"groups": [{"name": "c", "rules": rules}]})
    )
    result = run_promtool("check", "rules", "confirm.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_runbook_url_points_at_its_runbook_in_this_repository() -> None:
    """runbook_url is <runbookUrlBase>/<alert lower-cased>, and the default base is where
    these files are published: the chart's value, the operator's default and the CR's."""
    from jewelry_monitoring.builders.common import Owner
    from jewelry_monitoring.builders.rules import rule_groups
    from jewelry_monitoring.spec import DEFAULT_RUNBOOK_URL_BASE, JewelryMonitoringSpec

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["runbookUrlBase"] == DEFAULT_RUNBOOK_URL_BASE
    assert DEFAULT_RUNBOOK_URL_BASE.endswith("/tree/main/charts/jewelry-monitoring/runbooks")
    spec = JewelryMonitoringSpec.model_validate({"app": {"podSelector": {"app": "x"}}})
    ours = [
        rule
        for group in rule_groups(Owner("shop", "ns", "u", spec))
        for rule in group["rules"]
        if "alert" in rule
    ]
    for rule in [*ours, *chart_alert_rules()]:
        expected = f"{DEFAULT_RUNBOOK_URL_BASE}/{rule['alert'].lower()}"
        assert rule["annotations"].get("runbook_url") == expected, rule["alert"]
    mirror = "https://wiki.example.com/runbooks"
    for rule in chart_alert_rules({"runbookUrlBase": mirror}):
        assert rule["annotations"]["runbook_url"] == f"{mirror}/{rule['alert'].lower()}"


def test_the_alert_catalogue_is_generated() -> None:
    from devkit.alert_catalogue import CATALOGUE, catalogue_markdown

    assert CATALOGUE.read_text() == catalogue_markdown(), "run: jm-dev manifests"


def test_the_charts_base_applies_to_resources_that_do_not_set_theirs() -> None:
    """The chart's runbookUrlBase reaches the operator (JM_RUNBOOK_URL_BASE), which fills it
    into resources that leave alerts.runbookUrlBase unset, or still carry the retired schema
    default (a reserved domain that never served a page); a resource's own base wins."""
    from jewelry_monitoring.config import load
    from jewelry_monitoring.spec import (
        DEFAULT_RUNBOOK_URL_BASE,
        RETIRED_RUNBOOK_URL_BASE,
        JewelryMonitoringSpec,
        with_operator_defaults,
    )

    mirror = "https://wiki.example.com/runbooks"
    assert load(env={"JM_RUNBOOK_URL_BASE": mirror}).runbook_url_base == mirror

    def base(alerts: dict[str, Any], configured: str) -> str | None:
        spec = JewelryMonitoringSpec.model_validate(
            {"app": {"podSelector": {"app": "x"}}, "alerts": alerts}
        )
        return with_operator_defaults(spec, configured).alerts.runbook_url_base

    assert base({}, mirror) == mirror
    assert base({}, "") == DEFAULT_RUNBOOK_URL_BASE
    assert base({"runbookUrlBase": RETIRED_RUNBOOK_URL_BASE}, mirror) == mirror
    assert base({"runbookUrlBase": "https://mine.example.org/rb"}, mirror) == (
        "https://mine.example.org/rb"
    )
