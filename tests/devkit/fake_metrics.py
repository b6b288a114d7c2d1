"""Stand-ins for a Django pod's and the exporters' /metrics: the families our rules read,
with counters that grow steadily from the start (10 requests a second), so that rates,
ratios and error budgets settle on known values. Or a /metrics that refuses (403) or never
answers. For tests where pods are objects only (no node) and a real Prometheus scrapes
these in their place.

    fake_metrics(address, port, kind="django"|"postgres"|"redis"|"nginx"|"celery",
                 mode="ok"|"forbidden"|"hang", errors=0.5,
                 without=("django_migrations_",))   # context manager, a server thread

``errors`` is the share of 5xx responses; ``without`` leaves out the families with those
prefixes, as an app does that has the feature off (PROMETHEUS_EXPORT_MIGRATIONS...). Many
of them are cheap: threads of the test process, not processes.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from devkit.scrape_targets import serving
from jewelry_monitoring.spec import LATENCY_BUCKETS

REQUESTS_PER_SECOND = 10.0
# Every request is answered in 50 ms: faster than every latency bucket from 0.075 on.
LATENCY = 0.05


def _bucket(value: float) -> str:
    return repr(float(value))  # prometheus_client's spelling: 1.0, 0.25


def _histogram(name: str, labels: str, count: float) -> list[str]:
    lines = [
        f'{name}_bucket{{{labels},le="{_bucket(le)}"}} {count if le >= LATENCY else 0}'
        for le in LATENCY_BUCKETS
    ]
    return [
        *lines,
        f'{name}_bucket{{{labels},le="+Inf"}} {count}',
        f"{name}_count{{{labels}}} {count}",
        f"{name}_sum{{{labels}}} {count * LATENCY}",
    ]


def _exporter_lines(kind: str, total: float) -> list[str]:
    """What each exporter says about a healthy service it watches."""
    task = 'hostname="worker-1",name="shop.tasks.send_receipt"'
    return {
        "postgres": [
            "pg_up 1",
            'pg_stat_database_numbackends{datname="shop"} 5',
            "pg_settings_max_connections 100",
        ],
        "redis": [
            "redis_up 1",
            "redis_memory_used_bytes 1048576",
            "redis_memory_max_bytes 104857600",
            "redis_rejected_connections_total 0",
        ],
        "nginx": [
            "nginx_up 1",
            f"nginx_connections_accepted {total}",
            f"nginx_connections_handled {total}",
        ],
        "celery": [
            'celery_worker_up{hostname="worker-1"} 1',
            'celery_queue_length{queue_name="celery"} 0',
            f"celery_task_received_total{{{task}}} {total}",
            f"celery_task_succeeded_total{{{task}}} {total}",
            f"celery_task_failed_total{{{task}}} 0",
        ],
    }[kind]


def exposition(
    elapsed: float, errors: float = 0.0, without: Sequence[str] = (), kind: str = "django"
) -> str:
    """The /metrics text ``elapsed`` seconds after the start."""
    total = round(elapsed * REQUESTS_PER_SECOND, 3)
    failed = round(total * errors, 3)
    if kind != "django":
        return "\n".join(_exporter_lines(kind, total)) + "\n"
    lines = [
        f"django_http_requests_before_middlewares_total {total}",
        f'django_http_requests_total_by_method_total{{method="GET"}} {total}',
        f'django_http_responses_total_by_status_total{{status="200"}} {total - failed}',
        f'django_http_responses_total_by_status_total{{status="500"}} {failed}',
        *_histogram(
            "django_http_requests_latency_seconds_by_view_method", 'method="GET",view="home"', total
        ),
        'django_db_new_connections_total{alias="default",vendor="postgresql"} 1',
        f'django_db_execute_total{{alias="default",vendor="postgresql"}} {2 * total}',
        *_histogram(
            "django_db_query_duration_seconds", 'alias="default",vendor="postgresql"', 2 * total
        ),
        f'django_cache_get_total{{backend="redis"}} {total}',
        f'django_cache_get_hits_total{{backend="redis"}} {round(total * 0.9, 3)}',
        f'django_cache_get_misses_total{{backend="redis"}} {round(total * 0.1, 3)}',
        'django_migrations_unapplied_total{connection="default"} 0',
        'django_migrations_applied_total{connection="default"} 20',
    ]
    kept = [line for line in lines if not any(line.startswith(p) for p in without)]
    return "\n".join(kept) + "\n"


class _Server(ThreadingHTTPServer):
    """Quiet when a scraper hangs up first (a scrape timeout under load): that is the
    scraper's finding, not this stand-in's error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def fake_metrics(
    address: str,
    port: int,
    kind: str = "django",
    mode: str = "ok",
    errors: float = 0.0,
    without: Sequence[str] = (),
) -> Iterator[ThreadingHTTPServer]:
    """Serve /metrics on ``address:port`` from a thread until exit."""
    started = time.monotonic()
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if mode == "forbidden":
                self._answer(403, "forbidden\n")
            elif mode == "hang":
                release.wait(600)
            else:
                elapsed = time.monotonic() - started
                self._answer(200, exposition(elapsed, errors, without, kind))

        def _answer(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = _Server((address, port), Handler)
    try:
        with serving(server):
            yield server
    finally:
        release.set()  # the scrapes still hanging end too
