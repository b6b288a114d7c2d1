"""The chart's PrometheusRule for the operator itself, under ``promtool test rules``: a firing
and a silent case for each alert, on the series the operator really exports."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from devkit.operator_process import render_chart
from devkit.prometheus import PROMTOOL

RELEASE, NAMESPACE = "jm", "jm-system"
JOB = {"job": "jm-jewelry-monitoring-metrics", "namespace": NAMESPACE}


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in {**JOB, **labels}.items())
    return {"series": f"{metric}{{{text}}}", "values": values}


UP = "up"
LEADER = "jewelry_monitoring_leader"
ERRORS = "jewelry_monitoring_reconciles_total"
OLDEST = "jewelry_monitoring_queue_oldest_wait_seconds"
A, B = {"instance": "10.0.0.1:8081"}, {"instance": "10.0.0.2:8081"}

# (alert, at, input series, fires?)
CASES: list[tuple[str, str, list[dict[str, str]], bool]] = [
    ("JewelryMonitoringOperatorDown", "10m", [series(UP, "0x15", **A)], True),
    # No target at all (the Service selects no pod): absent() still names the job.
    (
        "JewelryMonitoringOperatorDown",
        "10m",
        [{"series": 'up{job="other"}', "values": "1x15"}],
        True,
    ),
    # Both replicas up, neither holds the Lease: nothing is reconciled.
    (
        "JewelryMonitoringOperatorDown",
        "10m",
        [
            series(UP, "1x15", **A),
            series(UP, "1x15", **B),
            series(LEADER, "0x15", **A),
            series(LEADER, "0x15", **B),
        ],
        True,
    ),
    (
        "JewelryMonitoringOperatorDown",
        "10m",
        [series(UP, "1x15", **A), series(UP, "0x15", **B), series(LEADER, "1x15", **A)],
        False,
    ),
    (
        "JewelryMonitoringReconcileErrors",
        "25m",
        [series(ERRORS, "0+6x30", result="error", **A)],
        True,
    ),
    (
        "JewelryMonitoringReconcileErrors",
        "25m",
        [
            series(ERRORS, "5x30", result="error", **A),
            series(ERRORS, "0+6x30", result="success", **A),
        ],
        False,
    ),
    # The oldest waiting resource waits longer and longer: nothing is taken off the queue.
    ("JewelryMonitoringOperatorQueueStuck", "15m", [series(OLDEST, "0+60x20", **A)], True),
    # Busy but moving: waits of seconds come and go.
    (
        "JewelryMonitoringOperatorQueueStuck",
        "15m",
        [series(OLDEST, "0 3 0 2 0 5 0 1 0 4 0 2 0 3 0 1", **A)],
        False,
    ),
]


def _rules() -> dict[str, Any]:
    objects = render_chart(RELEASE, NAMESPACE, {"metrics": {"prometheusRule": {"enabled": True}}})
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    return {"groups": rule["spec"]["groups"]}


def _expected(rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "exp_labels": {**JOB, **rule["labels"]},
            "exp_annotations": rule["annotations"],
        }
    ]


def test_promtool_fires_and_silences_every_operator_alert(tmp_path: Path) -> None:
    groups = _rules()
    alerts = {r["alert"]: r for group in groups["groups"] for r in group["rules"]}
    assert {case[0] for case in CASES} == set(alerts)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
    tests = [
        {
            "name": f"{alert} #{index} ({'fires' if fires else 'silent'})",
            "interval": "1m",
            "input_series": inputs,
            "alert_rule_test": [
                {
                    "eval_time": at,
                    "alertname": alert,
                    "exp_alerts": _expected(alerts[alert]) if fires else [],
                }
            ],
        }
        for index, (alert, at, inputs, fires) in enumerate(CASES)
    ]
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": tests}, sort_keys=False)
    )
    for command in (["check", "rules", "rules.yaml"], ["test", "rules", "tests.yaml"]):
        result = subprocess.run(
            [PROMTOOL, *command], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
