"""Past one cluster: two Prometheus servers' data in one view, told apart by ``cluster``.

Two "clusters" run the same JewelryMonitoring (same namespace and name, so the same job
names), each scraped by its own Prometheus with ``external_labels: {cluster: a|b}``:
cluster a has two app pods, cluster b one (the first pod of a, scraped by both). A third,
global Prometheus federates their raw series (federation adds the external labels) and
evaluates our rule groups on them, as a global ruler (Thanos Ruler, Mimir's ruler) would.

Through that one view, the chart's shared dashboards with their ``cluster`` variable chosen
show each cluster's app on its own, our recording rules keep one series per cluster, and
DjangoTargetDown, with the shared pod stopped, says which cluster lost what: some of a's
targets (a ticket), all of b's (a page). With the variable empty, as Grafana leaves it where
no series has a ``cluster`` label, the same panels read a single cluster's own Prometheus.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit import prometheus as prom
from devkit.shopapp import APP_DIR, PYTHON, ShopServer, gunicorn_server, http_status, shop_env
from jewelry_monitoring.builders.common import Owner, child_name
from jewelry_monitoring.builders.dashboards import shared_dashboards
from jewelry_monitoring.builders.desired import desired_objects
from jewelry_monitoring.builders.rules import REQUESTS_RATE
from jewelry_monitoring.spec import JewelryMonitoringSpec

pytestmark = pytest.mark.services

NAMESPACE, NAME = "shop", "jewelry"
JOB = child_name(NAME, "app-metrics")
SPEC: dict[str, Any] = {
    "app": {"podSelector": {"app": "shop"}, "interval": "1s", "scrapeTimeout": "1s"},
    "alerts": {"overrides": {"DjangoTargetDown": {"for": "0s"}}},
}
CLUSTERS = ("a", "b")


def _objects() -> list[dict[str, Any]]:
    owner = Owner(NAME, NAMESPACE, "uid-multicluster", JewelryMonitoringSpec.model_validate(SPEC))
    return desired_objects(owner, frozenset({"ServiceMonitor", "PrometheusRule"}))


def _panel_exprs(dashboard: str, title: str, cluster: str) -> list[str]:
    """A panel of the chart's shared dashboard, its variables chosen as a viewer would."""
    model = shared_dashboards()[dashboard]
    (panel,) = [p for p in model["panels"] if p.get("title") == title]
    values = {"namespace": NAMESPACE, "job": JOB, "cluster": cluster}
    return [t["expr"] for t in prom.fill_dashboard_variables(panel, values)["targets"]]


def _values(api: prom.PrometheusAPI, expr: str) -> list[tuple[dict[str, str], float]]:
    return [(r["metric"], float(r["value"][1])) for r in api.query(expr)]


@contextlib.contextmanager
def _clusters(
    shops: list[ShopServer],
) -> Iterator[tuple[dict[str, prom.Prometheus], prom.Prometheus]]:
    """One Prometheus per cluster (a: both pods, b: the first), then the global one."""
    objects = _objects()
    pods = {"a": shops, "b": shops[:1]}
    with contextlib.ExitStack() as stack:
        local = {}
        for cluster in CLUSTERS:
            config = prom.prometheus_config(
                objects, {JOB: [f"{s.host}:{s.port}" for s in pods[cluster]]}, rule_files=[]
            )
            config["global"]["external_labels"] = {"cluster": cluster}
            local[cluster] = stack.enter_context(prom.prometheus_server(config))
        federation = [
            {
                "job_name": f"federate-{cluster}",
                "scrape_interval": "1s",
                "honor_labels": True,
                "metrics_path": "/federate",
                # The raw series only: the global ruler records its own.
                "params": {"match[]": ['{__name__=~"[^:]+",job!~"federate-.*"}']},
                "static_configs": [{"targets": [prometheus.url.removeprefix("http://")]}],
            }
            for cluster, prometheus in local.items()
        ]
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": federation,
        }
        central = stack.enter_context(prom.prometheus_server(config, prom.rule_file(objects)))
        yield local, central


def _traffic(shop: ShopServer, requests: int) -> None:
    command = [PYTHON, "-m", "jewelry_shop.loadgen", f"http://{shop.host}:{shop.port}"]
    subprocess.run(
        [*command, "--requests", str(requests), "--duration", "30"],
        cwd=APP_DIR,
        capture_output=True,
        check=True,
        timeout=90,
    )


def test_one_view_of_two_clusters_shows_each_apps_panels_and_alerts_apart(
    tmp_path: Path,
) -> None:
    def shop(name: str) -> contextlib.AbstractContextManager[ShopServer]:
        return gunicorn_server(shop_env(f"sqlite:///{tmp_path / f'{name}.sqlite3'}"), workers=1)

    with contextlib.ExitStack() as stack, contextlib.ExitStack() as shared_pod:
        shops = [shared_pod.enter_context(shop("first")), stack.enter_context(shop("second"))]
        local, central = stack.enter_context(_clusters(shops))
        api = central.api
        for cluster, count in (("a", 2), ("b", 1)):
            api.wait_for(
                f'count(up{{cluster="{cluster}",job="{JOB}"}} == 1) == {count}',
                timeout=60,
                what=f"cluster {cluster}'s {count} app targets federated",
            )
        # A request to each pod first: its counters exist before the traffic (a counter's
        # increments before its first scrape are in no rate()). A view the app counts: the
        # probes' /healthz is not app traffic. Any answer will do (this database is empty).
        for shop in shops:
            assert http_status(f"{shop.url}/api/materials/", timeout=10) != 0, shop.url
        for cluster, count in (("a", 2), ("b", 1)):
            api.wait_for(
                f'count(django_http_requests_total_by_method_total{{cluster="{cluster}"}})'
                f" >= {count}",
                timeout=60,
                what=f"cluster {cluster}'s request counters federated",
            )
        _traffic(shops[1], 200)  # the pod only cluster a has
        api.wait_for(
            f'{REQUESTS_RATE}{{cluster="a"}} > 0.3',
            timeout=60,
            what="the global ruler's request rate of cluster a with the traffic in it",
        )

        # The Django dashboard, once per cluster: each shows its own app.
        targets = {
            cluster: _values(api, _panel_exprs("django", "Targets up", cluster)[0])
            for cluster in CLUSTERS
        }
        assert {cluster: [v for _, v in got] for cluster, got in targets.items()} == {
            "a": [2.0],
            "b": [1.0],
        }
        rates = {
            cluster: _values(api, _panel_exprs("django", "Requests/s", cluster)[0])
            for cluster in CLUSTERS
        }
        # Our recording rule keeps the cluster: one series each, never one for both.
        assert {c: [labels["cluster"] for labels, _ in got] for c, got in rates.items()} == {
            "a": ["a"],
            "b": ["b"],
        }, rates
        recorded = _values(api, f'{REQUESTS_RATE}{{namespace="{NAMESPACE}",job="{JOB}"}}')
        assert sorted(labels.get("cluster", "") for labels, _ in recorded) == ["a", "b"]
        ((_, rate_a),) = rates["a"]
        ((_, rate_b),) = rates["b"]
        assert rate_a > rate_b, rates  # the traffic went to cluster a's second pod only

        # One cluster's own Prometheus has no cluster label: the empty variable reads it.
        single = _values(local["b"].api, _panel_exprs("django", "Targets up", "")[0])
        assert [v for _, v in single] == [1.0]

        # The shared pod stops: a has lost one of two targets (a ticket), b all of its one
        # (a page, and the ticket Alertmanager's inhibition mutes).
        shared_pod.close()
        firing = 'ALERTS{alertname="DjangoTargetDown",alertstate="firing"}'
        api.wait_for(f"count({firing}) >= 3", timeout=60, what="DjangoTargetDown firing")
        alerts = sorted(
            (a["metric"].get("cluster", "-"), a["metric"]["severity"]) for a in api.query(firing)
        )
        assert alerts == [("a", "warning"), ("b", "critical"), ("b", "warning")], alerts
