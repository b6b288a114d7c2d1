"""`jm-dev bench`: how fast, how big and how quiet the operator is, on the local control plane.

Measures, in one run on one machine, for CRs with every exporter, SLOs, dashboards and alert
routing (23 children each):
- latency: create -> Ready=True, one CR at a time and ``--crs`` at once (p50/p95/max);
- the API requests of one no-op reconcile (reads; writes must be 0);
- scale: ``--scale`` CRs across ``--namespaces`` namespaces created at once: the time until
  all are Ready, API requests in total and per CR; then, on a fresh control plane, the time
  to create the same children directly with a concurrent client (the limit) and the ratio,
  by POST and again by guarded server-side apply (the operator's verb);
- idle: with everything reconciled, writes and watch (re-)establishments over ``--quiet``
  seconds (writes must be 0);
- the operator's peak RSS and CPU seconds, with ``--noise`` unrelated ConfigMaps and
  Deployments in other namespaces present from the start (memory and requests must not
  grow with them), its memory at import and its growth per CR; it runs under the chart's
  memory limit (a cgroup v1 memory group, ``--memory-limit``), and an OOM kill fails the run;
- restart: the operator restarted with every CR up to date: the time until it has confirmed
  each, its writes (0) and requests per CR;
- just started: ``--scale`` more CRs given at once to an operator that starts then (watching
  only their namespaces), against the same direct creation.
At the end, issue 19's goals table: each figure against its goal, with the load average.
With ``--apiserver-profile``, kube-apiserver's CPU profile of each burst (warm, just started,
direct creation: devkit.apiserver_profile); with ``--heap-profile``, what held each operator
process's memory at its largest (devkit.heap_sampler); both written under ``--profile-dir``.
Figures are printed; apart from an OOM kill, nothing is asserted here (the tests do that).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import urllib3
import yaml
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from devkit.apiserver_profile import ApiserverProfiles
from devkit.cluster import ControlPlane
from devkit.crs import GROUP, PLURAL, VERSION, CustomApi, cr_body, full_spec, make_secrets
from devkit.heap_sampler import load_report, report_lines, status_mib
from devkit.kubetools import api_client, install_missing_crds, operator_kube, wait_for
from devkit.manifests import chart_crd_files
from devkit.memory_cgroup import MemoryCgroup, why_no_memory_cgroup
from devkit.operator_process import (
    WRITE_VERBS,
    OperatorProcess,
    install_rbac,
    start_operator,
)
from devkit.stopping import shielded
from devkit.toolchain import prometheus_operator_crds
from jewelry_monitoring.cli import render

USER = "system:serviceaccount:jm-system:jm-jewelry-monitoring"
CHART = Path(__file__).resolve().parents[2] / "charts" / "jewelry-monitoring"


Listing = Callable[[], dict[str, Any]]
Watching = Callable[[str], Iterable[dict[str, Any]]]
# Watch errors that mean "your resource version is no good here": start over from a list.
RELIST_STATUSES = (410, 504)


def watch_source(api: client.ApiClient, namespace: str) -> tuple[Listing, Watching]:
    """List and watch of the JewelryMonitorings in ``namespace``, as ReadyClock uses them."""
    custom = CustomApi(api)

    def list_crs() -> dict[str, Any]:
        listing: dict[str, Any] = custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL
        )
        return listing

    def watch_crs(resource_version: str) -> Iterable[dict[str, Any]]:
        # With a timeout the library never resumes by itself: an ERROR event is raised as an
        # ApiException with the event's code, and ReadyClock decides what to do.
        events: Iterable[dict[str, Any]] = watch.Watch().stream(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            resource_version=resource_version,
            timeout_seconds=5,
            _request_timeout=30,  # a connection that hangs past the server's end is retried
        )
        return events

    return list_crs, watch_crs


class ReadyClock:
    """Watches the CRs and stamps the moment each first reports Ready=True.

    The API server ends watches in ordinary ways, and a benchmark must outlive them: a 410
    (compacted) or 504 ("Too large resource version") means list again and watch from there;
    other failures (dropped connections, 5xx) are retried after a short backoff. Only
    ``max_failures`` failures in a row with no progress stop the clock, and then ``wait``
    raises that error instead of a misleading timeout.
    """

    # A watch the server ends sooner than this is followed by a pause before the next one.
    MIN_WATCH_SECONDS = 1.0

    def __init__(
        self, list_crs: Listing, watch_crs: Watching, max_failures: int = 8, backoff: float = 0.2
    ) -> None:
        self.ready_at: dict[str, float] = {}
        self.lists = 0
        self.failure: BaseException | None = None
        self._list, self._watch = list_crs, watch_crs
        self._max_failures, self._backoff = max_failures, backoff
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _stamp(self, obj: dict[str, Any]) -> None:
        conditions = obj.get("status", {}).get("conditions", [])
        if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
            self.ready_at.setdefault(obj["metadata"]["name"], time.monotonic())

    def _run(self) -> None:
        resource_version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    listing = self._list()
                    self.lists += 1
                    for item in listing.get("items", []):
                        self._stamp(item)
                    resource_version = listing["metadata"]["resourceVersion"]
                started = time.monotonic()
                for event in self._watch(resource_version):
                    self._stamp(event["object"])
                    resource_version = event["object"]["metadata"]["resourceVersion"]
                    failures = 0
                    if self._stop.is_set():
                        return
                failures = 0  # the watch ran its time out: carry on from where it ended
                if time.monotonic() - started < self.MIN_WATCH_SECONDS:  # no request storm
                    self._stop.wait(self.MIN_WATCH_SECONDS)
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
                if isinstance(error, ApiException) and error.status in RELIST_STATUSES:
                    resource_version = None
                failures += 1
                if failures >= self._max_failures:
                    self.failure = error
                    return
                self._stop.wait(self._backoff * failures)

    def wait(self, names: list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(n in self.ready_at for n in names):
            if self.failure is not None:
                raise RuntimeError(
                    f"the watch of the CRs gave up after {self._max_failures} failures in a "
                    f"row: {self.failure}"
                ) from self.failure
            time.sleep(0.02)
        missing = [n for n in names if n not in self.ready_at]
        if missing:
            raise TimeoutError(f"not Ready in {timeout}s: {self._describe(missing)}")

    def _describe(self, names: list[str]) -> str:
        """What the API server says now of the CRs the clock has not seen Ready.

        Tells a slow operator (Ready not True) from a clock that missed an event.
        """
        try:
            items = {i["metadata"]["name"]: i for i in self._list().get("items", [])}
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            return f"{names} (listing them failed: {error})"
        described = []
        for name in names:
            conditions = items.get(name, {}).get("status", {}).get("conditions", [])
            ready = next((c for c in conditions if c["type"] == "Ready"), None)
            now = f"Ready={ready['status']} ({ready.get('reason')})" if ready else "no Ready"
            described.append(f"{name}: {now} on the API server")
        return "; ".join(described)

    def stop(self) -> None:
        self._stop.set()


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"n={len(ordered)} p50={statistics.median(ordered):.3f}s p95={p95:.3f}s "
        f"max={ordered[-1]:.3f}s"
    )


class AuditTail:
    """The operator's requests from the audit log, read on from where the last read ended
    (the log grows to hundreds of MB at 500 CRs: never re-read from the start).

    kube-apiserver rotates the log at 100 MB (``--audit-log-maxsize`` 0 means lumberjack's
    default): the file is renamed and a new one starts at the path. The tail keeps the file
    it reads open, finishes it once the path names another file, then goes on there."""

    def __init__(self, audit_log: Path) -> None:
        self._path = audit_log
        self._log: BinaryIO | None = None
        self._partial = b""  # the end of a line the API server is still writing
        if audit_log.exists():
            self._log = audit_log.open("rb")
            self._log.seek(0, os.SEEK_END)
        # The other clients' requests in what ``read`` went through, by user, verb and
        # resource: the API server's load that is not the operator's (the controller
        # manager, the bench's clocks).
        self.others: Counter[str] = Counter()

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def _lines(self) -> list[bytes]:
        """The complete lines logged since the last call, across rotations."""
        data = self._partial
        while True:
            if self._log is not None:
                data += self._log.read()
            try:
                current = self._path.stat().st_ino
            except FileNotFoundError:  # between the rename and the new file
                break
            if self._log is not None and os.fstat(self._log.fileno()).st_ino == current:
                break
            # Rotated (or first created): the old file is closed before it is renamed, so
            # one more read of it gets its last lines.
            if self._log is not None:
                data += self._log.read()
                self.close()
            self._log = self._path.open("rb")
        complete = data.rfind(b"\n") + 1
        self._partial = data[complete:]
        return data[:complete].splitlines()

    def skip(self) -> None:
        """Forget what was logged so far."""
        self._lines()

    def read(self) -> list[dict[str, Any]]:
        """The operator's requests since the last read, once each (watches log twice)."""
        requests, seen = [], set()
        self.others = Counter()
        for line in self._lines():
            entry = json.loads(line)
            if entry["auditID"] in seen:
                continue
            seen.add(entry["auditID"])
            user = entry.get("user", {}).get("username", "")
            if user == USER:
                requests.append(entry)
            else:
                self.others[f"{user.removeprefix('system:')}: {_described([entry])[0]}"] += 1
        return requests


def _described(requests: list[dict[str, Any]]) -> list[str]:
    return [
        f"{r['verb']} {r.get('objectRef', {}).get('resource', r['requestURI'])}" for r in requests
    ]


def _writes(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in requests if r["verb"] in WRITE_VERBS]


def _others_line(others: Counter[str]) -> str:
    return f"{others.total()} {dict(others.most_common(8))}"


def _requests_line(requests: list[dict[str, Any]], crs: int) -> str:
    return (
        f"{len(requests)} ({len(requests) / crs:.1f} per CR), {len(_writes(requests))} writes "
        f"{dict(Counter(_described(requests)).most_common(8))}"
    )


class ProcessUsage:
    """Peak resident memory and CPU time of one process, from /proc."""

    def __init__(self, pid: int) -> None:
        self._pid = pid

    def peak_rss_mib(self) -> float:
        return self._status_mib("VmHWM")

    def rss_mib(self) -> float:
        return self._status_mib("VmRSS")

    def _status_mib(self, field: str) -> float:
        mib = status_mib(field, self._pid)
        if mib is None:
            raise RuntimeError(f"no {field} for {self._pid}")
        return mib

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self._pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent busy since boot (/proc/stat)."""
    jiffies = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = jiffies[3] + jiffies[4]  # idle + iowait
    return (sum(jiffies[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class CpuSplit:
    """Where the CPU went while something ran: the CPU seconds of each named process and of
    the whole machine between ``__init__`` and ``line``. It tells whether the operator or
    the control plane bounds a burst (a Python process cannot use more than one core)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._usage = {name: ProcessUsage(pid) for name, pid in pids.items()}
        self._before = {name: usage.cpu_seconds() for name, usage in self._usage.items()}
        self._machine = _machine_busy_seconds()
        self._started = time.monotonic()

    def line(self) -> str:
        wall = time.monotonic() - self._started
        used = {
            name: usage.cpu_seconds() - self._before[name] for name, usage in self._usage.items()
        }
        parts = [f"{name} {seconds:.0f} s ({seconds / wall:.0%})" for name, seconds in used.items()]
        machine = _machine_busy_seconds() - self._machine
        cores = os.cpu_count() or 1
        rest = machine - sum(used.values())
        return (
            f"over {wall:.0f} s: {', '.join(parts)}, anything else {rest:.0f} s; "
            f"machine busy {machine:.0f} of {cores * wall:.0f} core-s "
            f"(each process as % of one core)"
        )


# Answers of a busy API server that a benchmark's own requests wait out and send again.
RETRIED_STATUSES = (429, 500, 502, 503, 504)


def retried(call: Callable[[], Any], attempts: int = 8) -> Any:
    """``call()``, again after a pause when the API server is busy or the connection drops:
    a benchmark at 1,000 CRs meets 429s and timeouts, and must not end for them."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            status = error.status if isinstance(error, ApiException) else 0
            if status == 409 and attempt > 1:  # an earlier attempt did create it
                return None
            if attempt == attempts or (status and status not in RETRIED_STATUSES):
                raise
            time.sleep(min(0.5 * attempt, 5.0))
    raise AssertionError("unreachable")


def _in_parallel(calls: list[Callable[[], Any]], threads: int = 16) -> None:
    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(retried, call) for call in calls]:
            future.result()


def _namespace(api: client.ApiClient, name: str) -> str:
    retried(
        lambda: client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=name))
        )
    )
    return name


def add_noise(api: client.ApiClient, count: int, namespaces: int = 10) -> None:
    """``count`` objects that are none of the operator's business: ConfigMaps and (scaled to
    zero) Deployments, spread over namespaces of their own."""
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    names = [_namespace(api, f"noise-{index}") for index in range(namespaces)]
    labels = {"app": "unrelated"}

    def config_map(index: int) -> None:
        core.create_namespaced_config_map(
            names[index % namespaces],
            client.V1ConfigMap(
                metadata=client.V1ObjectMeta(name=f"cm-{index}", labels=labels),
                data={"payload": "x" * 512},
            ),
        )

    def deployment(index: int) -> None:
        container = client.V1Container(name="app", image="registry.invalid/app:1")
        apps.create_namespaced_deployment(
            names[index % namespaces],
            client.V1Deployment(
                metadata=client.V1ObjectMeta(name=f"deploy-{index}", labels=labels),
                spec=client.V1DeploymentSpec(
                    replicas=0,
                    selector=client.V1LabelSelector(match_labels=labels),
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels=labels),
                        spec=client.V1PodSpec(containers=[container]),
                    ),
                ),
            ),
        )

    _in_parallel([partial(config_map if i % 2 else deployment, i) for i in range(count)])


def direct_creation_seconds(
    workdir: Path,
    crs: list[tuple[str, str]],
    during: Callable[[ControlPlane], AbstractContextManager[object]] = lambda _: nullcontext(),
    by_apply: bool = False,
) -> tuple[float, int, str]:
    """On a fresh control plane, the seconds a 16-thread client takes to create the children
    the operator makes for ``crs`` ((namespace, name) pairs), how many there are, and where
    the CPU went meanwhile: the limit the operator's convergence is compared with.
    ``during(plane)`` is entered for the creation alone (the bench's profiling). By POST, or
    with ``by_apply`` by the guarded server-side apply the operator creates with
    (``Kube.apply_new``), which costs the API server more: the two split the operator's ratio
    into what its verb costs and what the rest does."""
    plane = ControlPlane.create(workdir).start()
    try:
        api = api_client(plane.kubeconfig)
        install_missing_crds(api, prometheus_operator_crds())
        for namespace in sorted({namespace for namespace, _ in crs}):
            _namespace(api, namespace)
        children = []
        for namespace, name in crs:
            body = {
                **cr_body(name, full_spec()),
                "metadata": {"name": name, "namespace": namespace},
            }
            for obj in render(body, str(uuid.uuid4()), with_prometheus_operator=True):
                obj["metadata"].pop("ownerReferences", None)  # no owner here: GC would delete
                children.append(obj)
        kube = operator_kube(api)
        with during(plane):
            started = time.monotonic()
            cpu = CpuSplit({**plane.pids, "bench (16 threads creating)": os.getpid()})
            create = kube.apply_new if by_apply else kube.create
            _in_parallel([partial(create, obj) for obj in children])
            seconds = time.monotonic() - started
        return seconds, len(children), cpu.line()
    finally:
        plane.stop()


def _settle(audit: AuditTail, limit: float = 180) -> float:
    """Wait until the operator has made no request for 3 s (the controller manager keeps
    updating new Deployments' status for a while, and each update re-checks a CR)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        time.sleep(3)
        if not audit.read():
            break
    return time.monotonic() - started


@dataclass
class Figures:
    lines: list[str] = field(default_factory=list)
    # goal row -> (figure, goal, met): issue 19's table
    goals: dict[str, tuple[str, str, bool | None]] = field(default_factory=dict)

    def add(self, label: str, value: str) -> None:
        self.lines.append(f"{label:<44}: {value}")
        print(self.lines[-1], flush=True)

    def section(self, lines: list[str]) -> None:
        """Lines printed as they are (the profiles' summaries)."""
        self.lines.extend(lines)
        print("\n".join(lines), flush=True)

    def goal(self, row: str, figure: str, goal: str, met: bool | None) -> None:
        self.goals[row] = (figure, goal, met)

    def table(self) -> list[str]:
        load = "/".join(f"{value:.1f}" for value in os.getloadavg())
        rows = [
            "",
            f"issue 19 goals (load average {load}):",
            f"| {'figure':<52} | {'measured':<34} | {'goal':<34} | met |",
            f"|{'-' * 54}|{'-' * 36}|{'-' * 36}|-----|",
        ]
        for row, (figure, goal, met) in self.goals.items():
            verdict = "n/a" if met is None else ("yes" if met else "NO")
            rows.append(f"| {row:<52} | {figure:<34} | {goal:<34} | {verdict:<3} |")
        return rows


IMPORT_RSS = """
import sys
sys.modules["kubernetes"] = None
import kopf, jewelry_monitoring.cli, jewelry_monitoring.handlers
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print(int(status["VmHWM"].split()[0]) / 1024)
"""


def import_rss_mib() -> float:
    """The operator process's memory before it sees any object, as in its image (no
    ``kubernetes`` package)."""
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_RSS], check=True, capture_output=True, text=True
    )
    return float(done.stdout)


def chart_memory_limit_mib() -> float:
    """The operator's memory limit in the chart's values.yaml."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    limit = str(values["resources"]["limits"]["memory"])
    units = {"Ki": 1 / 1024, "Mi": 1.0, "Gi": 1024.0}
    for suffix, factor in units.items():
        if limit.endswith(suffix):
            return float(limit.removesuffix(suffix)) * factor
    return float(limit) / 1024 / 1024


def _spread(
    api: client.ApiClient, prefix: str, namespaces: int, count: int
) -> list[tuple[str, str]]:
    """(namespace, name) of ``count`` CRs over ``namespaces`` new namespaces with the
    exporters' Secrets."""
    names = [_namespace(api, f"{prefix}-{index}") for index in range(namespaces)]
    for name in names:
        make_secrets(api, name)
    return [(names[i % len(names)], f"{prefix[0]}-{i}") for i in range(count)]


def _last_ready(clocks: dict[str, ReadyClock], crs: list[tuple[str, str]], timeout: float) -> float:
    """When the last of ``crs`` turned Ready (monotonic)."""
    for namespace, clock in clocks.items():
        clock.wait([name for ns, name in crs if ns == namespace], timeout)
    return max(clock.ready_at[name] for ns, name in crs for clock in [clocks[ns]])


def _wait_reconciled(operator: OperatorProcess, count: int, timeout: float) -> float:
    """Seconds until the operator has finished ``count`` reconciles."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not operator.alive():
            raise RuntimeError(
                f"the operator exited ({operator.process.returncode}; -9: killed, e.g. for "
                f"memory) before {count} reconciles:\n{operator.logs()[-3000:]}"
            )
        try:
            if operator.reconciles() >= count:
                return time.monotonic() - started
        except OSError:  # its metrics endpoint is not up yet
            pass
        time.sleep(0.25)
    raise TimeoutError(f"fewer than {count} reconciles in {timeout}s")


def one_at_a_time(
    wait_ready: Callable[[], object],
    create: Callable[[str], float],
    ready_at: Callable[[str], float],
    names: list[str],
) -> list[float]:
    """Create -> Ready of each CR, the next created once the last is Ready, by an operator
    that has finished starting (``wait_ready``: its /readyz). Otherwise the first CR also
    times the startup's lists, which "CRs given to a just-started operator" measures: with
    --short's 5 CRs the p95 is the first CR, and it read 3.1 s where the others took 0.3."""
    wait_ready()
    latencies = []
    for name in names:
        started = create(name)
        latencies.append(ready_at(name) - started)
    return latencies


class Bench:
    """One run: a control plane, the operator (under a memory limit when the machine has a
    cgroup v1 memory controller), the phases, the figures."""

    def __init__(self, options: argparse.Namespace, workdir: Path, figures: Figures) -> None:
        self.options = options
        self.workdir = workdir
        self.figures = figures
        self.plane: ControlPlane | None = None
        self.operator: OperatorProcess | None = None
        self.clocks: list[ReadyClock] = []
        self.group: MemoryCgroup | None = None
        self.oom_kills = 0
        self.profiles = (
            ApiserverProfiles(options.profile_dir) if options.apiserver_profile else None
        )
        # (which operator process, its heap report), with --heap-profile
        self.heap_reports: list[tuple[str, Path]] = []

    def start_operator(self, label: str, args: tuple[str, ...] = ()) -> OperatorProcess:
        """Start the operator; ``label`` names its heap report (with --heap-profile)."""
        assert self.plane is not None
        heap_report = None
        if self.options.heap_profile:
            self.options.profile_dir.mkdir(parents=True, exist_ok=True)
            heap_report = self.options.profile_dir / f"heap-{label.replace(' ', '-')}.json"
            self.heap_reports.append((label, heap_report))
        self.operator = start_operator(
            self.kubeconfig,
            self.workdir / "operator.log",
            USER,
            args,
            env={"JM_LOG_LEVEL": "WARNING"},
            cgroup=self.group.path if self.group else None,
            heap_report=heap_report,
        )
        return self.operator

    @contextmanager
    def apiserver_profiled(self, plane: ControlPlane, phase: str) -> Iterator[None]:
        """kube-apiserver's CPU profile over the block, with --apiserver-profile."""
        if self.profiles is None:
            yield
            return
        profile = self.profiles.start(phase, plane.server, plane.admin_context)
        try:
            yield
        finally:
            profile.stop()

    def profile_lines(self) -> list[str]:
        """The profiles' summaries, or nothing without the options."""
        lines = []
        if self.profiles is not None:
            lines += ["", f"kube-apiserver CPU profiles ({self.options.profile_dir}):"]
            lines += self.profiles.lines()
        for label, path in self.heap_reports:
            try:
                report = load_report(path)
            except (OSError, ValueError, EOFError) as error:
                lines.append(f"heap, {label}: no report ({error})")
                continue
            lines += ["", *report_lines(label, report)]
        return lines

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()
            self.operator = None
        if self.group is not None:
            self.oom_kills = self.group.oom_kills()

    def clocks_for(
        self, api: client.ApiClient, crs: list[tuple[str, str]]
    ) -> dict[str, ReadyClock]:
        """A ReadyClock per namespace of ``crs``."""
        clocks = {ns: ReadyClock(*watch_source(api, ns)) for ns in sorted({ns for ns, _ in crs})}
        self.clocks.extend(clocks.values())
        return clocks

    def close(self) -> None:
        with shielded():
            for each in self.clocks:
                each.stop()
            if self.profiles is not None:
                self.profiles.stop_all()
            self.stop_operator()
            if self.plane is not None:
                self.plane.stop()
                self.plane = None
            if self.group is not None:
                self.group.remove()

    def run(self) -> None:
        options, figures = self.options, self.figures
        limit = options.memory_limit or chart_memory_limit_mib()
        why_not = why_no_memory_cgroup()
        if options.heap_profile:
            why_not = "--heap-profile (tracemalloc's tables and snapshots would count)"
        if why_not is None:
            self.group = MemoryCgroup.create(limit, prefix="jm-bench")
        figures.add(
            "memory limit of the operator",
            f"{limit:.0f} MiB (cgroup v1 memory group)" if self.group else f"none: {why_not}",
        )
        rss_at_import = import_rss_mib()
        figures.add("RSS at import, before any object", f"{rss_at_import:.1f} MiB")
        figures.goal(
            "RSS at import, before any object",
            f"{rss_at_import:.1f} MiB",
            "<= 60 MiB",
            rss_at_import <= 60,
        )
        self.plane = plane = ControlPlane.create(self.workdir).start()
        api = api_client(plane.kubeconfig)
        install_missing_crds(api, [*chart_crd_files(), *prometheus_operator_crds()])
        if options.noise:
            started = time.monotonic()
            add_noise(api, options.noise)
            figures.add(
                "unrelated objects (ConfigMaps, Deployments)",
                f"{options.noise} "
                f"(created in {time.monotonic() - started:.1f}s, before the operator)",
            )
        audit = AuditTail(plane.audit_log)
        self.kubeconfig = install_rbac(plane, api, "jm", "jm-system")
        operator = self.start_operator("first")
        usage = ProcessUsage(operator.process.pid)
        custom = CustomApi(api)

        def create(namespace: str, name: str) -> float:
            started = time.monotonic()
            retried(
                lambda: custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, cr_body(name, full_spec())
                )
            )
            return started

        namespace = _namespace(api, f"bench-{uuid.uuid4().hex[:6]}")
        make_secrets(api, namespace)
        clock = ReadyClock(*watch_source(api, namespace))
        self.clocks.append(clock)
        exporters = len(full_spec()["exporters"])
        figures.add("CR", f"every exporter ({exporters}), SLOs, dashboards and alert routing")

        def ready_at(name: str) -> float:
            clock.wait([name], options.timeout)
            return clock.ready_at[name]

        sequential = one_at_a_time(
            lambda: wait_for(operator.ready, 120, 0.05, what="the operator's /readyz"),
            partial(create, namespace),
            ready_at,
            [f"one-{index}" for index in range(options.crs)],
        )
        figures.add("create -> Ready, one at a time", _percentiles(sequential))
        p95 = sorted(sequential)[min(len(sequential) - 1, round(0.95 * (len(sequential) - 1)))]
        figures.goal("CR -> Ready, one at a time, p95", f"{p95:.2f} s", "<= 0.5 s", p95 <= 0.5)
        burst_names = [f"burst-{index}" for index in range(options.crs)]
        burst_started = {name: create(namespace, name) for name in burst_names}
        clock.wait(burst_names, options.timeout)
        burst = [clock.ready_at[n] - burst_started[n] for n in burst_names]
        figures.add(f"create -> Ready, {options.crs} at once", _percentiles(burst))
        figures.add("quiet again after", f"{_settle(audit):.1f}s")

        audit.skip()
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "one-0", {"metadata": {"labels": {"touch": "1"}}}
        )
        time.sleep(3)
        noop = audit.read()
        figures.add(
            "no-op reconcile",
            f"{len(noop)} API requests, {len(_writes(noop))} writes "
            f"{dict(Counter(_described(noop)).most_common(8))}",
        )

        total_crs = 2 * options.crs
        scaled: list[tuple[str, str]] = []
        converged = 0.0
        if options.scale:
            scaled = _spread(api, "scale", options.namespaces, options.scale)
            scale_clocks = self.clocks_for(api, scaled)
            _settle(audit)
            rss_before = usage.rss_mib()
            started = time.monotonic()
            cpu = CpuSplit({"operator": operator.process.pid, **plane.pids, "bench": os.getpid()})
            with self.apiserver_profiled(plane, "warm"):
                _in_parallel([partial(create, ns, name) for ns, name in scaled])
                converged = _last_ready(scale_clocks, scaled, options.timeout) - started
            figures.add("  CPU until all Ready", cpu.line())
            requests = audit.read()
            per_cr = len(requests) / options.scale
            figures.add(
                f"{options.scale} CRs at once, {options.namespaces} namespaces: all Ready",
                f"{converged:.1f}s",
            )
            figures.add("  API requests until then", _requests_line(requests, options.scale))
            figures.add("  other clients' requests meanwhile", _others_line(audit.others))
            figures.goal("API requests per CR until Ready", f"{per_cr:.1f}", "<= 30", per_cr <= 30)
            figures.add("quiet again after", f"{_settle(audit):.1f}s")
            growth = (usage.rss_mib() - rss_before) / options.scale
            figures.add("memory growth per CR (RSS, settled)", f"{growth:.3f} MiB")
            figures.goal("growth per CR", f"{growth:.3f} MiB", "<= 0.05 MiB", growth <= 0.05)
            total_crs += options.scale

        audit.skip()
        time.sleep(options.quiet)
        idle = audit.read()
        idle_writes = len(_writes(idle))
        figures.add(
            f"idle for {options.quiet:.0f}s",
            f"{len(idle)} API requests, {idle_writes} writes, "
            f"{sum(r['verb'] == 'watch' for r in idle)} watches (re-)established "
            f"{dict(Counter(_described(idle)).most_common(6))}",
        )
        # A watch the server ends (every WATCH_SECONDS) is renewed: not a request the
        # operator chose to make.
        chosen = [r for r in idle if r["verb"] != "watch"]
        figures.goal(
            f"idle {options.quiet:.0f} s (watch renewals aside)",
            f"{len(chosen)} requests, {idle_writes} writes",
            "0 writes, 0 requests",
            not chosen and idle_writes == 0,
        )
        peak = usage.peak_rss_mib()
        figures.add(
            "operator peak RSS, CPU", f"{peak:.0f} MiB, {usage.cpu_seconds():.1f} CPU seconds"
        )

        # Restart with everything up to date: confirmed from the watches, nothing written.
        self.stop_operator()
        audit.skip()
        operator = self.start_operator("restart")
        restarted = ProcessUsage(operator.process.pid)
        confirmed = _wait_reconciled(operator, total_crs, options.timeout)
        time.sleep(3)
        after_restart = audit.read()
        restart_writes = len(_writes(after_restart))
        restart_per_cr = len(after_restart) / total_crs
        figures.add(
            f"restart with {total_crs} up-to-date CRs: all confirmed",
            f"{confirmed:.1f}s, {len(after_restart)} API requests ({restart_per_cr:.2f} per CR), "
            f"{restart_writes} writes {dict(Counter(_described(after_restart)).most_common(6))}",
        )
        figures.goal(
            f"restart with {total_crs} up-to-date CRs",
            f"{confirmed:.1f} s, {restart_writes} writes, {restart_per_cr:.2f} req/CR",
            "<= 60 s, 0 writes, <= 3 req/CR",
            confirmed <= 60 and restart_writes == 0 and restart_per_cr <= 3,
        )
        figures.add("  operator peak RSS in that restart", f"{restarted.peak_rss_mib():.0f} MiB")
        peak = max(peak, restarted.peak_rss_mib())
        self.stop_operator()

        # Just started: the same number of CRs given at once to an operator that starts then.
        just_started = 0.0
        if options.scale:
            waiting = _spread(api, "start", options.namespaces, options.scale)
            _in_parallel([partial(create, ns, name) for ns, name in waiting])
            start_clocks = self.clocks_for(api, waiting)
            audit.skip()
            watched = tuple(
                arg for ns in sorted({ns for ns, _ in waiting}) for arg in ("--namespace", ns)
            )
            with self.apiserver_profiled(plane, "just started"):
                started = time.monotonic()
                operator = self.start_operator("just started", watched)
                fresh_usage = ProcessUsage(operator.process.pid)
                cpu = CpuSplit(
                    {"operator": operator.process.pid, **plane.pids, "bench": os.getpid()}
                )
                just_started = _last_ready(start_clocks, waiting, options.timeout) - started
            figures.add(
                f"{options.scale} CRs given to a just-started operator: all Ready",
                f"{just_started:.1f}s (peak RSS {fresh_usage.peak_rss_mib():.0f} MiB)",
            )
            figures.add("  CPU until all Ready", cpu.line())
            figures.add("  API requests until then", _requests_line(audit.read(), options.scale))
            figures.add("  other clients' requests meanwhile", _others_line(audit.others))
            self.stop_operator()

        headroom = (1 - peak / limit) * 100
        figures.goal(
            "operator peak RSS",
            f"{peak:.0f} MiB ({headroom:.0f} % under {limit:.0f} MiB)",
            "<= 150 MiB, >= 30 % headroom",
            peak <= 150 and headroom >= 30,
        )
        figures.add(
            "OOM kills under the memory limit", str(self.oom_kills) if self.group else "n/a"
        )
        figures.goal(
            "OOM kills under the chart's memory limit",
            str(self.oom_kills) if self.group else "not measured",
            "0",
            self.oom_kills == 0 if self.group else None,
        )
        figures.add("lists of the CRs by the clocks", f"{sum(c.lists for c in self.clocks)}")
        for each in self.clocks:
            each.stop()
        audit.close()
        plane.stop()
        self.plane = None
        if scaled:
            direct, children, direct_cpu = direct_creation_seconds(
                self.workdir, scaled, partial(self.apiserver_profiled, phase="direct creation")
            )
            figures.add("  CPU of direct creation", direct_cpu)
            figures.add(
                f"direct creation of the same {children} children (16 threads)",
                f"{direct:.1f}s; the operator took {converged / direct:.2f}x that (warm), "
                f"{just_started / direct:.2f}x (just started)",
            )
            figures.goal(
                "all Ready / direct creation, warm",
                f"{converged / direct:.2f}x",
                "<= 1.3x",
                converged / direct <= 1.3,
            )
            figures.goal(
                "all Ready / direct creation, just started",
                f"{just_started / direct:.2f}x",
                "<= 1.3x",
                just_started / direct <= 1.3,
            )
            applied, _, applied_cpu = direct_creation_seconds(self.workdir, scaled, by_apply=True)
            figures.add("  CPU of direct creation by apply", applied_cpu)
            figures.add(
                "the same children by guarded server-side apply (the operator's verb)",
                f"{applied:.1f}s ({applied / direct:.2f}x POST); the operator took "
                f"{converged / applied:.2f}x that (warm), {just_started / applied:.2f}x "
                "(just started)",
            )
        figures.section(self.profile_lines())


def run_bench(options: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="jm-bench-"))
    figures = Figures()
    bench = Bench(options, workdir, figures)
    try:
        bench.run()
        print("\n".join(["", "summary:", *figures.lines, *figures.table()]))
        if bench.oom_kills:
            print(f"the operator was OOM-killed {bench.oom_kills} times", file=sys.stderr)
            return 1
        return 0
    except TimeoutError:
        if bench.operator is not None:
            print(f"operator log, last lines:\n{bench.operator.logs()[-3000:]}", file=sys.stderr)
        # The profiles of the phases so far are what a run that timed out still tells.
        if bench.profiles is not None:
            bench.profiles.stop_all()
        print("\n".join(bench.profile_lines()), file=sys.stderr)
        raise
    finally:
        bench.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jm-dev bench", description=__doc__.splitlines()[0])
    parser.add_argument("--crs", type=int, default=50, help="CRs per latency phase (50)")
    parser.add_argument("--scale", type=int, default=500, help="CRs at once, 0 = skip (500)")
    parser.add_argument("--namespaces", type=int, default=10, help="namespaces of --scale (10)")
    parser.add_argument(
        "--noise", type=int, default=5000, help="unrelated ConfigMaps + Deployments (5000)"
    )
    parser.add_argument("--quiet", type=float, default=300.0, help="idle seconds to watch (300)")
    parser.add_argument(
        "--memory-limit",
        type=float,
        default=0.0,
        help="the operator's memory limit in MiB (default: the chart's resources.limits)",
    )
    parser.add_argument(
        "--short", action="store_true", help="CI size: 5 CRs, 20 across 2 namespaces, 5 idle s"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds one CR (or a whole burst) may take to turn Ready: a guard against "
        "hangs, not a goal (default 600)",
    )
    parser.add_argument(
        "--apiserver-profile",
        action="store_true",
        help="kube-apiserver's CPU profile over each burst (warm, just started, direct "
        "creation): CPU-s, top functions, buckets",
    )
    parser.add_argument(
        "--heap-profile",
        action="store_true",
        help="run the operator under tracemalloc (slower; no memory limit) and print what "
        "held its memory at its largest, per operator process",
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=Path("jm-bench-profiles"),
        help="where the profiles are written (default ./jm-bench-profiles)",
    )
    args = parser.parse_args(argv)
    if args.short:
        args.crs, args.scale, args.namespaces, args.noise, args.quiet = 5, 20, 2, 200, 5.0
    return run_bench(args)
