"""Real Prometheus, Alertmanager and the exporters, fed from the operator's objects.

The operator never writes a ``prometheus.yml``: prometheus-operator turns its ServiceMonitors
and PrometheusRule into one. Tests that run a real Prometheus need that translation without
a cluster, so this module does the part prometheus-operator would do, for static loopback
targets:

* each ServiceMonitor endpoint becomes one scrape job named like prometheus-operator's
  (``serviceMonitor/<ns>/<name>/<index>``) whose targets carry the labels prometheus-operator
  adds: ``job`` = the selected Service's name, ``namespace``, ``service``, ``pod``,
  ``endpoint``; interval, timeout, path and scheme come from the endpoint unchanged;
* the PrometheusRule's ``spec.groups`` become a rule file as they are.

Public API::

    scrape_configs(objects, targets) -> list[dict]   # ServiceMonitors -> scrape_configs
    prometheus_config(objects, targets, rule_files, alertmanager) -> dict
    rule_file(objects) -> dict                       # {"groups": PrometheusRule spec.groups}
    promql_metric_names(expr) -> set[str]            # metric names an expression reads
    promql_name_patterns(expr) -> set[str]           # its __name__=~"..." regexes
    dashboard_exprs(model) -> list[str]              # every PromQL of a Grafana dashboard
    fill_dashboard_variables(model, values) -> model # its $variables set, as Grafana sends
    Process / process(...)                           # restartable local process (exporters)
    prometheus_server(config, ...) -> Prometheus     # context manager, real /usr/bin/prometheus
    alertmanager_server(webhook_url) -> Process      # context manager, real alertmanager
    alertmanager_with_config(config) -> Process      # the same, running a given config
    webhook_receiver(failing) -> WebhookReceiver     # context manager, records notifications
    PrometheusAPI(url).query / .wait_for / .firing_alerts
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from devkit.ports import StartOutput, exited_during_start, lost_bind, start_on_fresh_ports
from devkit.services import LOOPBACK, ServiceError, stop_process_group
from devkit.shopapp import http_status
from devkit.toolchain import cache_dir

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
# The exporters at the versions the CR's default images pin, static builds from
# tests/toolchain/exporters (the binaries of our exporter images), except nginx's: the Go
# proxy refuses its module, so Debian's 0.11 (also what its image holds; see app/METRICS.md).
POSTGRES_EXPORTER = str(cache_dir() / "bin" / "postgres_exporter")
REDIS_EXPORTER = str(cache_dir() / "bin" / "redis_exporter")
NGINX_EXPORTER = "/usr/bin/prometheus-nginx-exporter"
NODE_EXPORTER = str(cache_dir() / "bin" / "node_exporter")

Obj = dict[str, Any]

# ServiceMonitor endpoint fields this translation implements; anything else is refused so a
# test never silently scrapes differently from what prometheus-operator would do.
_ENDPOINT_FIELDS = {
    "port": None,
    "path": "metrics_path",
    "interval": "scrape_interval",
    "scrapeTimeout": "scrape_timeout",
    "scheme": "scheme",
    "honorLabels": "honor_labels",
}
# ServiceMonitor spec fields that apply to all of its endpoints' jobs (the scrape limits).
_MONITOR_FIELDS = {
    "sampleLimit": "sample_limit",
    "labelLimit": "label_limit",
    "labelNameLengthLimit": "label_name_length_limit",
    "labelValueLengthLimit": "label_value_length_limit",
}


# --------------------------------------------------------------------------- translation


def _selects(selector: Obj, labels: Mapping[str, str]) -> bool:
    if set(selector) - {"matchLabels"}:
        raise NotImplementedError(f"selector fields {sorted(selector)} not supported")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def scrape_configs(objects: Sequence[Obj], targets: Mapping[str, Sequence[str]]) -> list[Obj]:
    """prometheus-operator's scrape jobs for the ServiceMonitors in ``objects``.

    ``targets`` maps a Service name to the ``host:port`` addresses that stand in for its
    endpoints (the pods). ServiceMonitors whose Service has no entry get no job: the caller
    decides (and says why) when a component has no local process.
    """
    services = [o for o in objects if o["kind"] == "Service"]
    jobs: list[Obj] = []
    for monitor in (o for o in objects if o["kind"] == "ServiceMonitor"):
        meta, spec = monitor["metadata"], monitor["spec"]
        namespaces = spec.get("namespaceSelector", {}).get("matchNames", [meta["namespace"]])
        selected = [
            s
            for s in services
            if s["metadata"]["namespace"] in namespaces
            and _selects(spec["selector"], s["metadata"].get("labels", {}))
        ]
        if len(selected) != 1:
            raise AssertionError(
                f"ServiceMonitor {meta['name']} selects {len(selected)} Services, expected 1"
            )
        service = selected[0]
        service_name = service["metadata"]["name"]
        if service_name not in targets:
            continue
        unknown = set(spec) - {"selector", "namespaceSelector", "endpoints", *_MONITOR_FIELDS}
        if unknown:
            raise NotImplementedError(f"ServiceMonitor fields {sorted(unknown)} not supported")
        for index, endpoint in enumerate(spec["endpoints"]):
            unsupported = set(endpoint) - set(_ENDPOINT_FIELDS)
            if unsupported:
                raise NotImplementedError(f"endpoint fields {sorted(unsupported)} not supported")
            port_names = {p.get("name") for p in service["spec"]["ports"]}
            if endpoint["port"] not in port_names:
                raise AssertionError(
                    f"ServiceMonitor {meta['name']} scrapes port {endpoint['port']!r}, "
                    f"Service {service_name} has {sorted(map(str, port_names))}"
                )
            job: Obj = {"job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}"}
            for key, prom_key in _ENDPOINT_FIELDS.items():
                if prom_key and key in endpoint:
                    job[prom_key] = endpoint[key]
            for key, prom_key in _MONITOR_FIELDS.items():
                if key in spec:
                    job[prom_key] = spec[key]
            job["static_configs"] = [
                {
                    "targets": [address],
                    "labels": {
                        "job": service_name,
                        "namespace": service["metadata"]["namespace"],
                        "service": service_name,
                        "endpoint": endpoint["port"],
                        "pod": f"{service_name}-{pod}",
                    },
                }
                for pod, address in enumerate(targets[service_name])
            ]
            jobs.append(job)
    return jobs


def rule_file(objects: Sequence[Obj]) -> Obj:
    """The PrometheusRule's ``spec.groups`` as a Prometheus rule file, unchanged."""
    rules = [o for o in objects if o["kind"] == "PrometheusRule"]
    if len(rules) != 1:
        raise AssertionError(f"expected one PrometheusRule, got {len(rules)}")
    return {"groups": rules[0]["spec"]["groups"]}


def prometheus_config(
    objects: Sequence[Obj],
    targets: Mapping[str, Sequence[str]],
    rule_files: Sequence[str],
    alertmanager: str | None = None,
    evaluation_interval: str = "1s",
) -> Obj:
    """A complete prometheus.yml: the operator's jobs, its rules, optionally an Alertmanager."""
    config: Obj = {
        "global": {"scrape_interval": "15s", "evaluation_interval": evaluation_interval},
        "rule_files": list(rule_files),
        "scrape_configs": scrape_configs(objects, targets),
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]}
    return config


def run_promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``promtool <args>`` in ``cwd`` (its files named relative to it), output captured."""
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- PromQL names

_PROMQL_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (``foo``, ``foo{...}``, ``foo[5m]``).

    A lexical reading good enough for our rules and dashboards: strings, label matchers,
    range/subquery brackets, grouping clauses and Grafana ``$variables`` are dropped, then
    every identifier not followed by ``(`` (a function or aggregation) and not a keyword is a
    metric name. ``{__name__="x"}`` names ``x``; a regex (``__name__=~"..."``) names no
    metric: ``promql_name_patterns`` returns it, for the caller to check what it matches.
    """
    exact = set(re.findall(r'__name__="([^"]*)"', expr))
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)
    text = re.sub(r"\{[^{}]*\}", "", text)
    text = re.sub(r"\[[^\[\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)
    names = re.findall(r"(?<![\w:.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()", text)
    return exact | {n for n in names if n.lower() not in _PROMQL_KEYWORDS}


def promql_name_patterns(expr: str) -> set[str]:
    """The regexes of ``{__name__=~"..."}`` selectors: metric names chosen by pattern."""
    return set(re.findall(r'__name__=~"([^"]*)"', expr))


def fill_dashboard_variables(model: Any, values: Mapping[str, str]) -> Any:
    """``model`` with each Grafana ``$variable`` of ``values`` replaced by its value, as
    Grafana sends the panels' queries once the variables are chosen (longest names first,
    so ``$job`` does not eat into ``$node_job``)."""
    text = json.dumps(model)
    for name, value in sorted(values.items(), key=lambda item: -len(item[0])):
        text = text.replace(f"${name}", value)
    return json.loads(text)


def dashboard_exprs(model: Any) -> list[str]:
    """Every ``expr`` in a Grafana dashboard model (panels, rows, nested panels)."""
    found: list[str] = []
    if isinstance(model, dict):
        for key, value in model.items():
            if key == "expr" and isinstance(value, str):
                found.append(value)
            else:
                found += dashboard_exprs(value)
    elif isinstance(model, list):
        for item in model:
            found += dashboard_exprs(item)
    return found


# --------------------------------------------------------------------------- processes


@dataclass
class Process:
    """A local process that can be stopped and started again (to take an exporter down).

    Runs in its own session; ``ready_path`` on its port must answer 200 before ``start``
    returns. Its first start chooses the port, a fresh one again when another process took
    it first (devkit.ports); a restart keeps it, since its clients know it.
    """

    name: str
    argv_for_port: Callable[[int], list[str]]
    ready_path: str
    workdir: Path
    env: dict[str, str] | None = None
    startup_timeout: float = 30
    port: int = 0  # 0 until the first start chose one
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        assert self._proc is not None, f"{self.name} is not started"
        return self._proc.pid

    def start(self) -> Process:
        if self.running:
            return self
        if self.port:
            self._start_on([self.port])
        else:
            start_on_fresh_ports(self._start_on)
        return self

    def _start_on(self, ports: list[int]) -> None:
        (port,) = ports
        output = StartOutput(self.log_path)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self.argv_for_port(port),
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://{LOOPBACK}:{port}{self.ready_path}"
        while http_status(url) != 200:
            # A lost bind may leave the process running (the Celery exporter serves from a
            # thread, which dies alone, and never answers): its words count as its exit.
            if self._proc.poll() is not None or lost_bind(output.text()):
                self.stop()
                raise exited_during_start(self.name, output.text(), ServiceError)
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"{self.name} not ready in {self.startup_timeout}s")
            time.sleep(0.1)
        self.port = port

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process_group(proc)


@contextlib.contextmanager
def process(
    name: str,
    argv_for_port: Callable[[int], list[str]],
    *,
    ready_path: str = "/metrics",
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 30,
) -> Iterator[Process]:
    """Start ``argv_for_port(free port)`` in a temp dir; stop it and delete the dir on exit."""
    tmp = Path(tempfile.mkdtemp(prefix=f"devkit-{name}-"))
    proc = Process(
        name=name,
        argv_for_port=argv_for_port,
        ready_path=ready_path,
        workdir=tmp,
        env=None if env is None else {"PATH": os.environ.get("PATH", ""), **env},
        startup_timeout=startup_timeout,
    )
    try:
        yield proc.start()
    finally:
        proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def postgres_exporter(dsn: str) -> contextlib.AbstractContextManager[Process]:
    return process(
        "postgres-exporter",
        lambda port: [POSTGRES_EXPORTER, f"--web.listen-address={LOOPBACK}:{port}"],
        env={"DATA_SOURCE_NAME": dsn},
    )


def redis_exporter(redis_url: str) -> contextlib.AbstractContextManager[Process]:
    return process(
        "redis-exporter",
        lambda port: [
            REDIS_EXPORTER,
            "-redis.addr",
            redis_url,
            "-web.listen-address",
            f"{LOOPBACK}:{port}",
        ],
        env={},
    )


def nginx_exporter(stub_status_url: str) -> contextlib.AbstractContextManager[Process]:
    # The Debian package is 0.11: single-dash flags; 1.x (the operator's image) takes the
    # same names with two dashes.
    return process(
        "nginx-exporter",
        lambda port: [
            NGINX_EXPORTER,
            "-nginx.scrape-uri",
            stub_status_url,
            "-web.listen-address",
            f"{LOOPBACK}:{port}",
        ],
        env={},
    )


# How danihodovic/celery-exporter starts (its PyPI package has no console script; CE_* env
# variables set its options). Its image's ENTRYPOINT is the same command. SIGTERM exits: in a
# pod the entrypoint is PID 1, which the kernel spares the signals it has no handler for, and
# the exporter installs none, so without one a pod's deletion waited out its grace period.
CELERY_EXPORTER_MAIN = (
    "import signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); "
    "from src.cli import cli; cli(auto_envvar_prefix='CE')"
)


def celery_exporter_python() -> Path:
    """The interpreter of the Celery exporter's own virtualenv (tests/toolchain/setup makes
    it: the exporter's pins clash with the shop's prometheus-client)."""
    return cache_dir() / "venvs" / "celery-exporter" / "bin" / "python"


def celery_exporter(broker_url: str) -> contextlib.AbstractContextManager[Process]:
    """PyPI's prometheus-exporter-celery (danihodovic/celery-exporter) on ``broker_url``."""
    return process(
        "celery-exporter",
        lambda port: [
            str(celery_exporter_python()),
            "-c",
            CELERY_EXPORTER_MAIN,
            "--host",
            LOOPBACK,
            "--port",
            str(port),
        ],
        env={"CE_BROKER_URL": broker_url},
        # /metrics can wait for the exporter's periodic worker inspection; /health does not.
        ready_path="/health",
    )


# The node exporter collectors the rules and dashboards read; the rest stay off (CPU).
NODE_COLLECTORS = ("cpu", "meminfo", "filesystem", "loadavg", "netdev", "diskstats")


def node_exporter() -> contextlib.AbstractContextManager[Process]:
    return process(
        "node-exporter",
        lambda port: [
            NODE_EXPORTER,
            f"--web.listen-address={LOOPBACK}:{port}",
            "--collector.disable-defaults",
            *(f"--collector.{c}" for c in NODE_COLLECTORS),
        ],
        env={},
    )


# --------------------------------------------------------------------------- Prometheus


@dataclass(frozen=True)
class Prometheus:
    url: str
    config_path: Path
    process: Process

    @property
    def api(self) -> PrometheusAPI:
        return PrometheusAPI(self.url)


@contextlib.contextmanager
def prometheus_server(
    config: Obj,
    rule_groups: Obj | None = None,
    *,
    startup_timeout: float = 60,
    binary: str = PROMETHEUS,
) -> Iterator[Prometheus]:
    """Real Prometheus on a free port, TSDB in a temp dir, ``config`` (rules: ``rule_groups``);
    Debian's 2.42 unless ``binary`` names another (the setup's Prometheus 3)."""
    tmp = Path(tempfile.mkdtemp(prefix="devkit-prometheus-"))
    try:
        config = dict(config)
        if rule_groups is not None:
            rules_path = tmp / "rules.yml"
            rules_path.write_text(yaml.safe_dump(rule_groups, sort_keys=False))
            config["rule_files"] = [str(rules_path)]
        config_path = tmp / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        proc = Process(
            name="prometheus",
            argv_for_port=lambda port: [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--storage.tsdb.retention.time=1h",
                "--rules.alert.resend-delay=1s",
                "--log.level=warn",
            ],
            ready_path="/-/ready",
            workdir=tmp,
            startup_timeout=startup_timeout,
        )
        try:
            proc.start()
            yield Prometheus(f"http://{LOOPBACK}:{proc.port}", config_path, proc)
        finally:
            proc.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def alertmanager_server(
    webhook_url: str, *, startup_timeout: float = 30
) -> contextlib.AbstractContextManager[Process]:
    """Real Alertmanager, no clustering, one webhook receiver, grouping times of one second."""
    config = {
        "route": {
            "receiver": "webhook",
            "group_by": ["alertname", "namespace", "job"],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "webhook",
                "webhook_configs": [{"url": webhook_url, "send_resolved": True}],
            }
        ],
    }
    return alertmanager_with_config(config, startup_timeout=startup_timeout)


@contextlib.contextmanager
def alertmanager_with_config(config: Obj, *, startup_timeout: float = 30) -> Iterator[Process]:
    """Real Alertmanager (Debian's 0.25), no clustering, running ``config``."""
    tmp = Path(tempfile.mkdtemp(prefix="devkit-alertmanager-"))
    try:
        config_path = tmp / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(config))
        proc = Process(
            name="alertmanager",
            argv_for_port=lambda port: [
                ALERTMANAGER,
                f"--config.file={config_path}",
                f"--storage.path={tmp / 'data'}",
                f"--web.listen-address={LOOPBACK}:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            ready_path="/-/ready",
            workdir=tmp,
            startup_timeout=startup_timeout,
        )
        try:
            yield proc.start()
        finally:
            proc.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class WebhookReceiver:
    """Records every Alertmanager webhook notification (the parsed JSON bodies)."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self._server = server
        self.notifications: list[Obj] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/alerts"

    def record(self, body: Obj) -> None:
        with self._lock:
            self.notifications.append(body)

    def alerts(self, alertname: str, status: str | None = None) -> list[Obj]:
        """Alerts named ``alertname`` received so far (optionally only firing/resolved)."""
        with self._lock:
            notes = list(self.notifications)
        return [
            alert
            for note in notes
            for alert in note.get("alerts", [])
            if alert.get("labels", {}).get("alertname") == alertname
            and (status is None or alert.get("status") == status)
        ]


@contextlib.contextmanager
def webhook_receiver(
    failing: Sequence[str] = (), host: str = LOOPBACK
) -> Iterator[WebhookReceiver]:
    """Records every notification POSTed to it, except on ``failing`` paths (below ``url``,
    e.g. "broken"), which answer 500 and record nothing: a receiver that is down. It listens
    on ``host``: loopback, or the local node's address for an Alertmanager in a pod."""
    holder: list[WebhookReceiver] = []
    refused = {f"/alerts/{path}" for path in failing}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if self.path in refused:
                self.send_response(500)
                self.end_headers()
                return
            with contextlib.suppress(ValueError):
                holder[0].record(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)  # the kernel's choice: no race
    holder.append(WebhookReceiver(server))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.daemon = True
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --------------------------------------------------------------------------- HTTP API


class PrometheusAPI:
    """The few Prometheus HTTP API calls the tests need."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    def _get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as resp:
                payload = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            payload = json.loads(exc.read() or b"{}")
            raise AssertionError(f"{path} {params}: {payload.get('error', exc)}") from exc
        if payload.get("status") != "success":
            raise AssertionError(f"{path} {params}: {payload}")
        return payload["data"]

    def query(self, expr: str) -> list[Obj]:
        """Instant vector result of ``expr`` (a list of {"metric": ..., "value": [t, v]})."""
        data = self._get("/api/v1/query", query=expr)
        if data["resultType"] != "vector":
            raise AssertionError(f"{expr} gave a {data['resultType']}, not a vector")
        return list(data["result"])

    def value(self, expr: str) -> float | None:
        """The single value of ``expr``, None when empty."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise AssertionError(f"{expr} has {len(result)} series")
        return float(result[0]["value"][1])

    def wait_for(
        self, expr: str, timeout: float, *, interval: float = 0.5, what: str = ""
    ) -> list[Obj]:
        """Poll until ``expr`` returns series; AssertionError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{what or expr}: no series within {timeout}s")
            time.sleep(interval)

    def wait_empty(self, expr: str, timeout: float, *, interval: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while self.query(expr):
            if time.monotonic() > deadline:
                raise AssertionError(f"{expr}: still has series after {timeout}s")
            time.sleep(interval)

    def targets(self) -> list[Obj]:
        return list(self._get("/api/v1/targets", state="active")["activeTargets"])

    def rules(self) -> list[Obj]:
        return list(self._get("/api/v1/rules")["groups"])

    def alerts(self) -> list[Obj]:
        return list(self._get("/api/v1/alerts")["alerts"])
