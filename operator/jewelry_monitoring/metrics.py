"""The operator's own Prometheus metrics: what it reconciles, how long, and how it talks to the API.

A leaf module (import-linter keeps it one): the client module, the work queue and the leader
election record into these metrics, and nothing here calls back into them. Names follow
controller-runtime's where there is an equivalent, under the ``jewelry_monitoring_`` prefix.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

RECONCILES = Counter(
    "jewelry_monitoring_reconciles",
    "Reconciles of JewelryMonitoring resources, by result: success, requeue_after (a retry is "
    "scheduled, e.g. prometheus-operator's CRDs are missing) or error.",
    ["result"],
)
RECONCILE_DURATION = Histogram(
    "jewelry_monitoring_reconcile_duration_seconds",
    "Wall time of one reconcile of one JewelryMonitoring.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RETRIES = Counter(
    "jewelry_monitoring_retries",
    "Retries scheduled by the work queue, by reason: error (backoff) or requeue_after.",
    ["reason"],
)
CHILD_WRITES = Counter(
    "jewelry_monitoring_child_writes",
    "Writes to child objects, by kind and action (Created, Updated, Replaced, Deleted).",
    ["kind", "action"],
)
API_REQUEST_DURATION = Histogram(
    "jewelry_monitoring_api_request_duration_seconds",
    "Latency of requests to the Kubernetes API, by verb (errors included).",
    ["verb"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_REQUEST_ERRORS = Counter(
    "jewelry_monitoring_api_request_errors",
    "Failed requests to the Kubernetes API, by verb and HTTP status (0: no response). A GET "
    "answered 404 is an answer (the object does not exist), not an error.",
    ["verb", "code"],
)
PROMETHEUS_REQUESTS = Counter(
    "jewelry_monitoring_prometheus_requests",
    "Requests to the Prometheus HTTP API for the checks of JewelryMonitorings (targets, rules, "
    "series, SLOs): one per scrape pool plus 3 per resource and check interval, at most.",
)
LEADER = Gauge(
    "jewelry_monitoring_leader",
    "1 while this replica may write (it holds the leader Lease, or runs without leader "
    "election), else 0.",
)

_CHILD_WRITE = re.compile(r"^(Created|Updated|Replaced|Deleted) (\w+) ")


def count_child_writes(writes: list[str]) -> None:
    """Count the child writes among a reconcile's write log ("Created Deployment x", ...)."""
    for write in writes:
        match = _CHILD_WRITE.match(write)
        if match:
            CHILD_WRITES.labels(kind=match[2], action=match[1]).inc()


@contextmanager
def api_request(verb: str) -> Iterator[None]:
    """Time one API request; count it as an error, with its status, if it raises."""
    started = time.perf_counter()
    try:
        yield
    except Exception as error:
        code = int(getattr(error, "status", 0) or 0)
        if not (verb == "get" and code == 404):
            API_REQUEST_ERRORS.labels(verb=verb, code=str(code)).inc()
        raise
    finally:
        API_REQUEST_DURATION.labels(verb=verb).observe(time.perf_counter() - started)


class QueueWaits:
    """When each waiting key was first requested, for the depth and oldest-wait gauges.

    A key waits from its first request until its reconcile starts; further requests in
    between do not reset the clock, so a stuck key shows a wait that keeps growing.
    """

    def __init__(self) -> None:
        self._since: dict[Hashable, float] = {}
        self._lock = threading.Lock()  # the gauges are read from the HTTP server's thread

    def requested(self, key: Hashable) -> None:
        with self._lock:
            self._since.setdefault(key, time.monotonic())

    def started(self, key: Hashable) -> None:
        with self._lock:
            self._since.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._since.clear()

    def depth(self) -> int:
        with self._lock:
            return len(self._since)

    def oldest_wait(self) -> float:
        with self._lock:
            oldest = min(self._since.values(), default=None)
        return 0.0 if oldest is None else time.monotonic() - oldest


QUEUE = QueueWaits()
Gauge(
    "jewelry_monitoring_queue_depth", "JewelryMonitorings waiting for a reconcile to start."
).set_function(QUEUE.depth)
Gauge(
    "jewelry_monitoring_queue_oldest_wait_seconds",
    "How long the longest-waiting JewelryMonitoring has waited for its reconcile to start.",
).set_function(QUEUE.oldest_wait)


class Readiness:
    """What ``GET /readyz`` answers: 200 once ``check`` (given by the handlers at startup)
    finds nothing missing, else 503 with the reason it returns."""

    def __init__(self) -> None:
        self._check: Callable[[], str] | None = None

    def use(self, check: Callable[[], str]) -> None:
        self._check = check

    def unready_reason(self) -> str:
        """Why this replica is not ready; empty when it is."""
        return "starting" if self._check is None else self._check()


READINESS = Readiness()


def _app() -> WSGIApplication:
    """/readyz, and the metrics on every other path (as prometheus-client serves them)."""
    metrics_app = make_wsgi_app()

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/readyz":
            return list(metrics_app(environ, start_response))
        reason = READINESS.unready_reason()
        status = "503 Service Unavailable" if reason else "200 OK"
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [f"{reason or 'ready'}\n".encode()]

    return app


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: the kubelet and Prometheus ask every few seconds."""


def serve(port: int) -> None:
    """Serve /metrics and /readyz on ``port`` (all interfaces) from a daemon thread."""
    server = make_server("0.0.0.0", port, _app(), ThreadingWSGIServer, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
