"""What an e2e failure says about a silent exporter (devkit.exporter_report): its scrapes as
Prometheus saw them, its pods' restarts and last termination, and its logs (or why there are
none). On the control plane alone: the pod is written with the status a kubelet would report
after restarts (no node runs it, so it has no log), and Prometheus is a loopback stand-in
that answers the report's queries."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client

from devkit.exporter_report import exporter_report, exporters_in
from devkit.prometheus import PrometheusAPI
from devkit.scrape_targets import serving

pytestmark = pytest.mark.cluster

JOB = "shop-celery-exporter"
LABELS = {"app.kubernetes.io/name": "celery-exporter", "app.kubernetes.io/instance": "shop"}
CR = {
    "metadata": {"name": "shop", "namespace": "set by the test"},
    "spec": {"exporters": {"celery": {"enabled": True}, "redis": {"enabled": True}}},
}
SCRAPE_ERROR = 'Get "http://10.0.0.7:9808/metrics": dial tcp 10.0.0.7:9808: connect: refused'


@pytest.fixture
def prometheus() -> Iterator[PrometheusAPI]:
    """Answers every query with one series of value 0 for the celery job, and one target
    of that job, down with SCRAPE_ERROR."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            data: dict[str, Any]
            if url.path == "/api/v1/targets":
                target = {
                    "labels": {"job": JOB},
                    "scrapeUrl": "http://10.0.0.7:9808/metrics",
                    "health": "down",
                    "lastScrape": "2026-12-07T17:00:00Z",
                    "lastScrapeDuration": 0.002,
                    "lastError": SCRAPE_ERROR,
                }
                data = {"activeTargets": [target]}
            else:
                series = {"metric": {"instance": "10.0.0.7:9808"}, "value": [0, "0"]}
                data = {"resultType": "vector", "result": [series]}
            body = json.dumps({"status": "success", "data": data}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as server:
        yield PrometheusAPI(f"http://127.0.0.1:{server.server_address[1]}")


def _restarted_exporter(api: client.ApiClient, namespace: str) -> None:
    """The exporter's Deployment, and a pod of it whose status says it crash-loops."""
    container = {"name": "celery-exporter", "image": "localhost/jm/celery-exporter:0"}
    client.AppsV1Api(api).create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": JOB},
            "spec": {
                "replicas": 0,  # no ReplicaSet pod beside the one written below
                "selector": {"matchLabels": LABELS},
                "template": {"metadata": {"labels": LABELS}, "spec": {"containers": [container]}},
            },
        },
    )
    core = client.CoreV1Api(api)
    pod = f"{JOB}-5d4c7b9f8-x2x9k"
    core.create_namespaced_pod(
        namespace,
        {"metadata": {"name": pod, "labels": LABELS}, "spec": {"containers": [container]}},
    )
    status = {
        "name": "celery-exporter",
        "image": container["image"],
        "imageID": "",
        "ready": False,
        "restartCount": 4,
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {
            "terminated": {
                "reason": "Error",
                "exitCode": 1,
                "startedAt": "2026-12-07T16:58:00Z",
                "finishedAt": "2026-12-07T16:59:00Z",
            }
        },
    }
    core.patch_namespaced_pod_status(
        pod, namespace, {"status": {"phase": "Running", "containerStatuses": [status]}}
    )


def test_the_report_names_restarts_last_termination_scrapes_and_logs(
    admin_api: client.ApiClient, namespace: str, prometheus: PrometheusAPI
) -> None:
    _restarted_exporter(admin_api, namespace)
    cr = {**CR, "metadata": {**CR["metadata"], "namespace": namespace}}
    missing = [f'sum(rate(celery_task_succeeded_total{{job="{JOB}"}}[2m]))']
    exporters = exporters_in(cr, missing)
    assert exporters == ["celery"]  # redis is enabled too, but no missing query names its job

    report = exporter_report(admin_api, prometheus, cr, exporters)

    lines = [line.strip() for line in report.splitlines()]
    assert lines[0] == f"celery exporter (job {JOB}):"
    assert f"up{{job=\"{JOB}\"}}: [('10.0.0.7:9808', '0')]" in lines
    for history in ("min_over_time(up", "max_over_time(scrape_duration_seconds"):
        assert any(line.startswith(f'{history}{{job="{JOB}"}}[15m]): ') for line in lines)
    assert (
        "target http://10.0.0.7:9808/metrics: health down, last scrape 2026-12-07T17:00:00Z "
        f"took 0.00s, error {SCRAPE_ERROR!r}"
    ) in lines
    assert "container celery-exporter: ready False, restarts 4" in lines
    assert "now waiting reason=CrashLoopBackOff" in lines
    assert any(
        line.startswith("last terminated reason=Error exit_code=1 started_at=2026-12-07")
        for line in lines
    ), report
    # No kubelet runs the pod: the API server has no log of it. Both logs (the current and,
    # after restarts, the previous container's) are asked for and reported as they are.
    assert "log: empty" in lines, report
    assert "previous container's log: empty" in lines, report
    # The broker probe needs the pod's container, which no node runs here: it says so.
    assert any(line.startswith("broker probe in its pod: not run (") for line in lines), report
    assert "redis" not in report
