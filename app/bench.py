#!/usr/bin/env python
"""Benchmark the cost of the Prometheus instrumentation (not a test; prints figures).

In one run on this machine, with real PostgreSQL and Redis (tests/devkit/services.py):

1. the same gunicorn app twice, both running side by side -- instrumented, and with
   ``PROMETHEUS_ENABLED=false`` (no middleware, plain DB/cache backends, no model mixins)
   -- on the same seeded DB, one sync worker each, equally warmed up, loaded by ``wrk`` on
   loopback view by view, the variants alternating run by run (ABBA). The main figure is
   the worker's CPU time per request (from its schedstat counters) and the instrumented /
   plain ratio of it: on a shared machine, requests/s moves with everybody else's load
   between two runs seconds apart, the worker's own CPU time much less. Requests/s and the
   median of the per-round plain / instrumented ratios are printed beside it;
2. after the timed rounds (it changes the data: orders, stock), the load generator drives
   every view of both; then ``/metrics`` response time and size;
3. RSS of the gunicorn workers of both variants (and of the master);
4. first, without services: the cost of one scrape in multiprocess mode against the number
   of dead gunicorn workers whose files are in ``PROMETHEUS_MULTIPROC_DIR`` (20 views, a
   counter and a histogram each, as django-prometheus writes them, plus 2 live workers),
   merged as they are by prometheus_client's ``MultiProcessCollector``, and after
   jewelry_monitoring_django's gunicorn hook folded them one exit at a time (the cost of one
   fold is printed too), the sizes alternating round by round: 10, 1,000 and 10,000 dead
   workers (10 and 300 with ``--short``).

Usage (from the repo root)::

    .venv/bin/python app/bench.py            # ~4-5 minutes
    .venv/bin/python app/bench.py --short    # CI: ~60 s, fewer/shorter runs
    .venv/bin/python app/bench.py --scrape-only   # part 4 only (no wrk, no services)

Everything is bounded: wrk runs for a fixed duration, the load generator has request and
time budgets, every subprocess has a timeout, and all services are stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from devkit.services import postgres_service, redis_service  # noqa: E402
from devkit.shopapp import gunicorn_server, manage, shop_env  # noqa: E402
from jewelry_shop.loadgen import run as loadgen  # noqa: E402


def wrk(url: str, seconds: int, connections: int) -> tuple[float, int]:
    """Run wrk against ``url``; return (requests/s, requests completed)."""
    res = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    )
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", res.stdout).group(1))  # type: ignore[union-attr]
    done = re.search(r"(\d+) requests in", res.stdout)
    assert done, res.stdout
    if "Non-2xx" in res.stdout or "Socket errors" in res.stdout:
        raise RuntimeError(f"wrk saw errors for {url}:\n{res.stdout}")
    return rps, int(done.group(1))


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fetch(url: str) -> tuple[float, bytes]:
    """GET ``url``: (milliseconds, body)."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read()
    return (time.perf_counter() - start) * 1000, body


def cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid`` so far, all threads (nanosecond schedstat counters)."""
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9


@dataclass(frozen=True)
class Run:
    rps: float  # wall clock: what the machine's other load also moves
    cpu_ms: float  # the gunicorn worker's CPU time per request: the app's own cost


def measure(url: str, worker: int, seconds: int, connections: int) -> Run:
    """One wrk run against a 1-worker server: requests/s and the worker's CPU per request."""
    cpu = cpu_seconds(worker)
    rps, requests = wrk(url, seconds, connections)
    return Run(rps=rps, cpu_ms=(cpu_seconds(worker) - cpu) * 1000 / requests)


def scrape_figures(url: str) -> dict[str, float]:
    """/metrics response time (30 scrapes), size and sample lines."""
    times, body = [], b""
    for _ in range(30):
        ms, body = fetch(url)
        times.append(ms)
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return {
        "median_ms": statistics.median(times),
        "p90_ms": sorted(times)[int(len(times) * 0.9) - 1],
        "bytes": len(body),
        "series": series,
    }


def write_worker(directory: Path, pid: int, views: int) -> None:
    """The files a gunicorn worker leaves after serving every view once (prometheus_client's
    own writer, as django-prometheus's counter and latency histogram use it)."""
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    counter = MmapedDict(str(directory / f"counter_{pid}.db"))
    histogram = MmapedDict(str(directory / f"histogram_{pid}.db"))
    family = "django_http_requests_latency_seconds_by_view_method"
    for n in range(views):
        labels = {"view": f"view-{n}", "method": "GET"}
        counter.write_value(
            mmap_key(
                "django_http_requests_total_by_view_transport_method",
                "django_http_requests_total_by_view_transport_method_total",
                [*labels, "transport"],
                [*labels.values(), "http"],
                "Count of requests by view, transport, method.",
            ),
            1.0,
            0.0,
        )
        histogram.write_value(
            mmap_key(family, f"{family}_sum", list(labels), list(labels.values()), "Latency."),
            0.02,
            0.0,
        )
        for le in ("0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "+Inf"):
            histogram.write_value(
                mmap_key(
                    family,
                    f"{family}_bucket",
                    [*labels, "le"],
                    [*labels.values(), le],
                    "Latency.",
                ),
                1.0 if le == "0.025" else 0.0,
                0.0,
            )
    counter.close()
    histogram.close()


def seconds_of(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def scrape_vs_dead_workers(counts: tuple[int, ...], views: int = 20) -> None:
    """Part 4: one scrape against dead workers' files, unfolded and folded. The scrapes of
    every size alternate round by round, so a burst of load on the machine hits them alike."""
    from jewelry_monitoring_django import fold
    from jewelry_monitoring_django.collector import FoldingCollector
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    def scrape_with(collector: object) -> Callable[[], bytes]:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)  # type: ignore[arg-type]
        return lambda: generate_latest(registry)

    with contextlib.ExitStack() as stack:
        unfolded_scrape, folded_scrape, folding, files_left = {}, {}, {}, {}
        for dead in counts:
            unfolded = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
            for pid in range(1, dead + 3):
                write_worker(unfolded, pid, views)
            unfolded_scrape[dead] = scrape_with(MultiProcessCollector(None, path=str(unfolded)))  # type: ignore[no-untyped-call]
            folded = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
            spent = 0.0
            for pid in range(3, dead + 3):  # each worker exits and the master folds it
                write_worker(folded, pid, views)
                started = time.perf_counter()
                fold.fold(folded, [pid])
                spent += time.perf_counter() - started
            folding[dead] = spent / dead
            for pid in (1, 2):  # the live ones
                write_worker(folded, pid, views)
            folded_scrape[dead] = scrape_with(FoldingCollector(folded))
            assert folded_scrape[dead]() == scrape_with(FoldingCollector(unfolded))(), dead
            files_left[dead] = len(os.listdir(folded))
        times: dict[str, dict[int, list[float]]] = {"unfolded": {}, "folded": {}}
        for round_ in range(5):
            for dead in counts:
                times["folded"].setdefault(dead, []).append(seconds_of(folded_scrape[dead]))
                if dead <= 2000 or round_ < 2:  # ~30 s each at 10,000
                    times["unfolded"].setdefault(dead, []).append(seconds_of(unfolded_scrape[dead]))
    rows = [
        (
            dead,
            files_left[dead],
            statistics.median(times["unfolded"][dead]),
            statistics.median(times["folded"][dead]),
            folding[dead],
        )
        for dead in counts
    ]
    load = os.getloadavg()
    print(
        f"\n== One scrape against dead gunicorn workers ({views} views, a counter and a "
        f"histogram each; 2 live workers; load average {load[0]:.2f} {load[1]:.2f}) =="
    )
    print(
        f"{'dead workers':>12} {'unfolded':>10} {'folded':>10} {'files left':>10} "
        f"{'one fold':>10} {'folded / folded at ' + str(counts[0]):>24}"
    )
    for dead, files_left, unfolded, folded, per_fold in rows:
        print(
            f"{dead:>12,} {unfolded:>9.3f}s {folded:>9.4f}s {files_left:>10} "
            f"{per_fold * 1000:>8.2f}ms {folded / rows[0][3]:>24.2f}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description="instrumentation overhead benchmark")
    parser.add_argument("--short", action="store_true", help="quick bounded run for CI")
    parser.add_argument(
        "--scrape-only", action="store_true", help="only the scrape cost against dead workers"
    )
    args = parser.parse_args()
    scrape_vs_dead_workers((10, 300) if args.short else (10, 1_000, 10_000))
    if args.scrape_only:
        return 0
    if not shutil.which("wrk"):
        print("wrk not found (apt-get install wrk)", file=sys.stderr)
        return 2
    seconds = 2 if args.short else 4  # wrk takes whole seconds
    rounds = 2 if args.short else 5
    connections = 4

    with postgres_service() as pg, redis_service() as redis:
        env_base = shop_env(pg.dsn, redis.url, LOG_LEVEL="WARNING", GUNICORN_LOGLEVEL="warning")
        manage("migrate", "--noinput", env=env_base)
        manage("seed_demo", "--products", "40", "--customers", "20", env=env_base)
        variants = {
            "instrumented": dict(env_base),
            "plain": {**env_base, "PROMETHEUS_ENABLED": "false"},
        }
        paths = {
            "product detail API (cached)": "/api/products/1/",
            "product list page (HTML)": "/",
            "materials API": "/api/materials/",
            "healthz (uncounted)": "/healthz",
        }
        runs: dict[str, dict[str, list[Run]]] = {v: {p: [] for p in paths} for v in variants}
        with contextlib.ExitStack() as stack:
            servers = {
                variant: stack.enter_context(gunicorn_server(env, workers=1))
                for variant, env in variants.items()
            }
            for server in servers.values():
                for path in paths.values():  # warm up caches and connections
                    for _ in range(20):
                        fetch(server.url + path)
            for rnd in range(rounds):
                for label, path in paths.items():
                    # ABBA order: neither variant always runs first after a switch of view
                    for variant in list(variants)[:: 1 if rnd % 2 == 0 else -1]:
                        (worker,) = servers[variant].worker_pids()
                        runs[variant][label].append(
                            measure(servers[variant].url + path, worker, seconds, connections)
                        )
            # After the timed rounds: the load generator changes the data (orders, stock).
            rss: dict[str, dict[str, int]] = {}
            for variant, server in servers.items():
                stats = loadgen(server.url, requests=400, duration=60, seed=0)
                assert stats.failures == 0, (variant, stats)
                rss[variant] = {
                    "worker_kib": max(rss_kib(p) for p in server.worker_pids()),
                    "master_kib": rss_kib(server.pid),
                }
            metrics_figures = scrape_figures(servers["instrumented"].url + "/metrics")

    load = os.getloadavg()
    print(
        f"\n== Instrumentation overhead: 1 sync gunicorn worker per variant, both up, "
        f"wrk -t1 -c{connections} -d{seconds}s per view and variant, {rounds} alternating "
        f"round(s), PostgreSQL + Redis, loopback; load average {load[0]:.2f} {load[1]:.2f} =="
    )
    print(
        "worker CPU per request (robust to other load; medians over rounds), and requests/s "
        "(wall clock: noisy on a shared machine; median of the per-round ratios)"
    )
    print(
        f"{'view':29} {'plain cpu':>10} {'instr cpu':>10} {'cpu cost':>9} {'cpu ratio':>9}"
        f" {'plain rps':>9} {'instr rps':>9} {'rps ratio':>9}"
    )
    costs = []
    for label in paths:
        plain, instr = runs["plain"][label], runs["instrumented"][label]
        plain_cpu = statistics.median(r.cpu_ms for r in plain)
        instr_cpu = statistics.median(r.cpu_ms for r in instr)
        costs.append(instr_cpu - plain_cpu)
        rps_ratio = statistics.median(p.rps / i.rps for p, i in zip(plain, instr, strict=True))
        print(
            f"{label:29} {plain_cpu:8.3f}ms {instr_cpu:8.3f}ms {instr_cpu - plain_cpu:7.3f}ms"
            f" {instr_cpu / plain_cpu:9.3f} {statistics.median(r.rps for r in plain):9.0f}"
            f" {statistics.median(r.rps for r in instr):9.0f} {rps_ratio:9.3f}"
        )
    print(f"{'mean per-request CPU cost':29} {'':10} {'':10} {statistics.mean(costs):7.3f}ms")
    print("\n== /metrics after the load generator drove every view ==")
    print(
        f"response time median {metrics_figures['median_ms']:.1f} ms, "
        f"p90 {metrics_figures['p90_ms']:.1f} ms, size {metrics_figures['bytes']} bytes, "
        f"{metrics_figures['series']} series"
    )
    print("\n== RSS after load ==")
    for variant, figures in rss.items():
        print(
            f"{variant:13} worker {figures['worker_kib'] / 1024:6.1f} MiB   "
            f"master {figures['master_kib'] / 1024:6.1f} MiB"
        )
    delta = (rss["instrumented"]["worker_kib"] - rss["plain"]["worker_kib"]) / 1024
    print(f"instrumentation adds {delta:+.1f} MiB per worker")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
