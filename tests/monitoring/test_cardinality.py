"""The cardinality guard against a real Prometheus: scrape limits, the ratio, the alert, the panel.

Three "pods" of one app job, each the real shop under gunicorn: one as it is, one exposing a
test-only family (``TEST_METRIC_SERIES``) that brings it near the CR's sampleLimit, one
exposing more than the limit. Prometheus's scrape jobs and rules are translated from the
operator's own objects (devkit.prometheus), the limits included.
"""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit import prometheus as prom
from devkit.shopapp import ShopServer, gunicorn_server, shop_env
from devkit.toolchain import built_binary
from jewelry_monitoring.builders.common import Owner, child_name
from jewelry_monitoring.builders.dashboards import DASHBOARDS, panel_exprs, shared_scope
from jewelry_monitoring.builders.desired import desired_objects
from jewelry_monitoring.builders.rules import SAMPLE_LIMIT_ALERT, SAMPLE_LIMIT_RATIO
from jewelry_monitoring.spec import JewelryMonitoringSpec

pytestmark = pytest.mark.services

NAMESPACE, NAME = "shop-cardinality", "guarded"
SAMPLE_LIMIT = 1000
SPEC: dict[str, Any] = {
    "app": {
        "podSelector": {"app": "shop"},
        "interval": "1s",
        "scrapeTimeout": "1s",
        "scrapeLimits": {"sampleLimit": SAMPLE_LIMIT},
    },
    "alerts": {"overrides": {SAMPLE_LIMIT_ALERT.name: {"for": "0s"}}},
}
JOB = child_name(NAME, "app-metrics")


def _samples(shop: ShopServer) -> int:
    with urllib.request.urlopen(f"http://{shop.host}:{shop.port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


@contextlib.contextmanager
def _shops(tmp_path: Path) -> Iterator[dict[str, ShopServer]]:
    """The plain shop, then two with the wide test family: near and past the limit."""
    widths = {"plain": 0, "near": 750, "over": SAMPLE_LIMIT + 100}
    with contextlib.ExitStack() as stack:
        shops = {}
        for pod, width in widths.items():
            env = shop_env(
                f"sqlite:///{tmp_path / f'{pod}.sqlite3'}", TEST_METRIC_SERIES=str(width)
            )
            shops[pod] = stack.enter_context(gunicorn_server(env, workers=1))
        yield shops


@pytest.mark.parametrize(
    "binary",
    [prom.PROMETHEUS, str(built_binary("prometheus"))],
    ids=["prometheus-2.42-debian", "prometheus-3"],
)
def test_a_target_near_its_sample_limit_alerts_and_one_past_it_is_refused(
    tmp_path: Path, binary: str
) -> None:
    owner = Owner(NAME, NAMESPACE, "uid-cardinality", JewelryMonitoringSpec.model_validate(SPEC))
    objects = desired_objects(owner, frozenset({"ServiceMonitor", "PrometheusRule"}))
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["sampleLimit"] == SAMPLE_LIMIT
    with _shops(tmp_path) as shops:
        config = prom.prometheus_config(
            objects, {JOB: [f"{s.host}:{s.port}" for s in shops.values()]}, rule_files=[]
        )
        (job,) = config["scrape_configs"]
        assert job["sample_limit"] == SAMPLE_LIMIT
        instance = {pod: f"{s.host}:{s.port}" for pod, s in shops.items()}
        with prom.prometheus_server(config, prom.rule_file(objects), binary=binary) as prometheus:
            api = prometheus.api
            # Each target is first scraped at its own moment (under load, seconds apart).
            api.wait_for(
                f'count({SAMPLE_LIMIT_RATIO}{{job="{JOB}"}}) == 3',
                timeout=60,
                what="the ratio of all three targets recorded",
            )
            alert = f'ALERTS{{alertname="{SAMPLE_LIMIT_ALERT.name}",alertstate="firing"}}'
            api.wait_for(f"count({alert}) >= 2", timeout=60, what="TargetNearSampleLimit")
            firing = api.query(alert)
            by_target = {
                t["labels"]["instance"]: t for t in api.targets() if t["labels"]["job"] == JOB
            }
            ratios = {
                r["metric"]["instance"]: float(r["value"][1])
                for r in api.query(f'{SAMPLE_LIMIT_RATIO}{{job="{JOB}"}}')
            }
            panel = _panel_values(api)
        sizes = {pod: _samples(shop) for pod, shop in shops.items()}
    print(f"samples per scrape: {sizes}; ratios: {ratios}")
    # Past the limit: the whole scrape is refused, and the target says why.
    over = by_target[instance["over"]]
    assert over["health"] == "down"
    assert "sample limit exceeded" in over["lastError"], over
    assert by_target[instance["plain"]]["health"] == by_target[instance["near"]]["health"] == "up"
    # The ratio per target, against the limit.
    assert ratios[instance["plain"]] < SAMPLE_LIMIT_ALERT.threshold  # type: ignore[operator]
    assert 0.8 < ratios[instance["near"]] < 1
    # Prometheus still counts the refused scrape's samples: the ratio says how far past.
    assert ratios[instance["over"]] > 1
    # The alert names the target near its limit and the one past it, never the plain one.
    alerted = {alert["metric"]["instance"] for alert in firing}
    assert alerted == {instance["near"], instance["over"]}, firing
    # The chart's System dashboard shows the same ratio per target.
    assert panel == {
        (JOB, target): pytest.approx(value, abs=0.05) for target, value in ratios.items()
    }


def _panel_values(api: prom.PrometheusAPI) -> dict[tuple[str, str], float]:
    """The cardinality panel of the chart's System dashboard, as Grafana would query it."""
    scope = shared_scope()
    (panel,) = [
        p
        for d in DASHBOARDS
        for section in d.sections
        for p in section.panels
        if p.title == "Samples per scrape, share of sampleLimit"
    ]
    ((expr, _),) = panel_exprs(scope, panel)
    values = {"cluster": "", "namespace": NAMESPACE, "job": JOB}  # one cluster: no label
    filled = prom.fill_dashboard_variables(expr, values)
    return {
        (r["metric"]["job"], r["metric"]["instance"]): float(r["value"][1])
        for r in api.query(filled)
    }
