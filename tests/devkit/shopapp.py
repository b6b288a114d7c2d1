"""Run the jewelry shop (app/) as a real gunicorn process, and scrape its /metrics.

Public API::

    APP_DIR                                   # path of app/
    shop_env(database_url=None, redis_url=None, **extra) -> dict[str, str]
    manage(*args, env) -> CompletedProcess    # python app/manage.py ... (raises on failure)
    gunicorn_server(env, *, workers=2, startup_timeout=60) -> ShopServer  (context manager)
    scrape(url, **request_kwargs) -> Scrape   # parsed Prometheus text exposition
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from devkit.ports import StartOutput, exited_during_start, start_on_fresh_ports
from devkit.services import LOOPBACK, ServiceError, free_port, stop_process_group

APP_DIR = Path(__file__).resolve().parents[2] / "app"
PYTHON = sys.executable


def shop_env(
    database_url: str | None = None, redis_url: str | None = None, **extra: str
) -> dict[str, str]:
    """A clean environment for the app: the caller's PATH/locale plus the given settings.

    Without ``database_url`` the app uses its embedded SQLite default (in app/ -- pass a
    ``sqlite:////tmp/...`` URL in tests instead).
    """
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "TZ")}
    env["DJANGO_SETTINGS_MODULE"] = "jewelry_shop.settings"
    env["PYTHONUNBUFFERED"] = "1"
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update(extra)
    return env


def manage(
    *args: str, env: Mapping[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``manage.py`` with ``args`` in ``env``; raise ServiceError on failure."""
    res = subprocess.run(
        [PYTHON, str(APP_DIR / "manage.py"), *args],
        cwd=APP_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if res.returncode != 0:
        raise ServiceError(f"manage.py {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}")
    return res


@dataclass(frozen=True)
class ShopServer:
    """A running gunicorn master serving the shop on ``url``."""

    host: str
    port: int
    pid: int
    multiproc_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def worker_pids(self) -> list[int]:
        """PIDs of the current gunicorn workers (children of the master)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except OSError:
            return []

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def http_status(url: str, timeout: float = 2) -> int:
    """Status code of GET ``url``; 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


@contextlib.contextmanager
def gunicorn_server(
    env: Mapping[str, str],
    *,
    workers: int = 2,
    threads: int = 1,
    startup_timeout: float = 60,
    ready_path: str = "/healthz",
    host: str = LOOPBACK,
) -> Iterator[ShopServer]:
    """Start ``gunicorn -c app/gunicorn.conf.py`` on a free port of ``host`` (loopback;
    ``"::1"`` for IPv6), a fresh one when another process took it first.

    Uses a private ``PROMETHEUS_MULTIPROC_DIR`` (unless ``env`` sets one). Waits until
    ``ready_path`` answers 200 and every worker has booted; stops the whole process group
    on exit.
    """
    tmp = Path(tempfile.mkdtemp(prefix="devkit-shop-"))
    log = tmp / "gunicorn.log"
    started: list[subprocess.Popen[bytes]] = []

    def start(ports: list[int]) -> ShopServer:
        (port,) = ports
        full_env = dict(env)
        full_env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(tmp / "prom"))
        full_env.update(
            BIND=f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
            WEB_CONCURRENCY=str(workers),
            GUNICORN_THREADS=str(threads),
        )
        output = StartOutput(log)
        with open(log, "ab") as logf:
            proc = subprocess.Popen(
                [PYTHON, "-m", "gunicorn", "-c", str(APP_DIR / "gunicorn.conf.py")],
                cwd=APP_DIR,
                env=full_env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(proc)
        server = ShopServer(
            host=host,
            port=port,
            pid=proc.pid,
            multiproc_dir=Path(full_env["PROMETHEUS_MULTIPROC_DIR"]),
            log_path=log,
        )
        deadline = time.monotonic() + startup_timeout
        while True:
            if proc.poll() is not None:
                raise exited_during_start("gunicorn", output.text(), ServiceError)
            # Workers are forked once the master holds the port: before, whatever answers
            # there may be the process that took it (gunicorn then retries for 5 s, exits).
            forked = len(server.worker_pids())
            # A generous timeout: a probe abandoned by the client is still served later
            # from the listen backlog, and would count in the app's metrics after the
            # caller's first scrape (test_multiprocess counted 91 of 90 under load).
            if forked >= workers and http_status(server.url + ready_path, timeout=30) == 200:
                return server
            if time.monotonic() > deadline:
                raise ServiceError(f"gunicorn not ready:\n{output.tail()}")
            time.sleep(0.2)

    try:
        yield start_on_fresh_ports(start, choose=lambda: free_port(host))
    finally:
        for proc in started:
            stop_process_group(proc, timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


class Scrape:
    """Parsed /metrics output: ``families`` by name, ``value(sample, **labels)``."""

    def __init__(self, text: str, status: int = 200, headers: Mapping[str, str] | None = None):
        self.text = text
        self.status = status
        self.headers = dict(headers or {})
        self.families = {f.name: f for f in text_string_to_metric_families(text)}

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        """All samples named exactly ``name`` (e.g. ``..._total``, ``..._bucket``)."""
        return [
            (dict(s.labels), s.value)
            for f in self.families.values()
            for s in f.samples
            if s.name == name
        ]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples named ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(
            v
            for lbls, v in self.samples(name)
            if all(lbls.get(k) == val for k, val in labels.items())
        )

    def has(self, name: str, **labels: str) -> bool:
        return any(
            all(lbls.get(k) == val for k, val in labels.items()) for lbls, _ in self.samples(name)
        )


def scrape(url: str, headers: Mapping[str, str] | None = None, timeout: float = 10) -> Scrape:
    """GET ``url`` (a /metrics URL) and parse it; non-200 answers give an empty Scrape."""
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Scrape(resp.read().decode(), resp.status, dict(resp.headers))
    except urllib.error.HTTPError as exc:
        return Scrape("", exc.code, dict(exc.headers))


@contextlib.contextmanager
def celery_worker(
    env: Mapping[str, str], log_path: Path, loglevel: str = "info"
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker for the shop (solo pool) in its own session, stopped on exit.

    No ``--task-events`` flag: the shop's settings must turn task events on by themselves,
    which is what celery-exporter in a real deployment relies on.
    """
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "celery",
                "-A",
                "jewelry_shop",
                "worker",
                "--pool",
                "solo",
                "--loglevel",
                loglevel,
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=APP_DIR,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield worker
    finally:
        stop_process_group(worker, timeout=30)
