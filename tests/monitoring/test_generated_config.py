"""The Prometheus config translated from the operator's objects, checked by promtool.

No processes besides promtool: the ServiceMonitors and PrometheusRule of the test CR become
a prometheus.yml and a rule file exactly as the live stack uses them (devkit.prometheus).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit import prometheus as prom

COMPONENTS = ("app", "postgres", "redis", "nginx", "celery")


@pytest.fixture(scope="module")
def objects(cr: Any) -> list[dict[str, Any]]:
    return cr.objects()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def config(cr: Any, objects: list[dict[str, Any]]) -> dict[str, Any]:
    targets = {cr.service_name(c): [f"127.0.0.1:{9000 + i}"] for i, c in enumerate(COMPONENTS)}
    return prom.prometheus_config(objects, targets, ["rules.yml"], "127.0.0.1:9093")


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    if not os.access(prom.PROMTOOL, os.X_OK):
        pytest.fail("promtool not installed (tests/toolchain/setup installs it)")
    return subprocess.run(
        [prom.PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def test_one_job_per_service_monitor_with_prometheus_operator_labels(
    cr: Any, config: dict[str, Any], objects: list[dict[str, Any]]
) -> None:
    jobs = {j["static_configs"][0]["labels"]["job"]: j for j in config["scrape_configs"]}
    assert set(jobs) == {cr.service_name(c) for c in COMPONENTS}
    for component in COMPONENTS:
        job = jobs[cr.service_name(component)]
        spec = cr.spec["app"] if component == "app" else cr.spec["exporters"][component]
        assert job["job_name"] == f"serviceMonitor/{cr.namespace}/{cr.service_name(component)}/0"
        assert job["scrape_interval"] == spec["interval"]
        assert job["scrape_timeout"] == spec["scrapeTimeout"]
        assert job["metrics_path"] == "/metrics"
        labels = job["static_configs"][0]["labels"]
        assert labels["namespace"] == cr.namespace
        assert labels["service"] == cr.service_name(component)
        assert labels["endpoint"] == "metrics"


def test_promtool_check_config_and_rules(
    config: dict[str, Any], objects: list[dict[str, Any]], tmp_path: Path
) -> None:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(prom.rule_file(objects), sort_keys=False))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    res = _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout
    res = _promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    groups = prom.rule_file(objects)["groups"]
    assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in res.stdout


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (job, le) (rate(a_bucket{job="x",le=~"1(\\\\.0)?"}[5m]))', {"a_bucket"}),
        ('up{a="b"} == 0 or absent(up{a="b"})', {"up"}),
        ("x / on (namespace, pod) group_left y > bool 0.5", {"x", "y"}),
        ('histogram_quantile(0.95, job:foo:rate5m{a="1"})', {"job:foo:rate5m"}),
        ('topk(10, sum by (view) (rate(m_total{a="b"}[$__rate_interval])))', {"m_total"}),
        ('1 - node_a{x="1"} / node_b offset 5m', {"node_a", "node_b"}),
        ('rate({__name__="a_total",job="x"}[5m])', {"a_total"}),
        (
            'label_replace({__name__=~"job:a:ratio.+",job="x"}, "w", "$1", "__name__", "(.+)")',
            set(),
        ),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert prom.promql_metric_names(expr) == names


def test_promql_name_patterns() -> None:
    expr = 'label_replace({__name__=~"job:a:ratio.+",job="x"}, "w", "$1", "__name__", "(.+)")'
    assert prom.promql_name_patterns(expr) == {"job:a:ratio.+"}
    assert prom.promql_name_patterns('up{job="x"}') == set()
