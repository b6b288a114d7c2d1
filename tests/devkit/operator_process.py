"""Run the real operator as a subprocess under the Helm chart's own RBAC.

The chart is rendered with the real ``helm``; its ServiceAccount, ClusterRoles and bindings
are applied to the control plane, and the operator authenticates with a token of that
ServiceAccount. So an integration test passes only if the chart grants what the operator
needs, and the audit log attributes every write to that ServiceAccount.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from devkit.cluster import ControlPlane
from devkit.kubetools import load_yaml_documents, service_account_kubeconfig
from devkit.ports import StartOutput, exited_during_start, start_on_fresh_ports
from devkit.stopping import shielded
from devkit.toolchain import binary

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "jewelry-monitoring"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def render_chart(
    release: str, namespace: str, values: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """``helm template`` of our chart, as objects: what ``helm install`` applies (no test
    hooks)."""
    command = [str(binary("helm")), "template", release, str(CHART), "--namespace", namespace]
    command.append("--skip-tests")
    for key, value in (values or {}).items():
        command += ["--set-json", f"{key}={json.dumps(value)}"]
    rendered = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return load_yaml_documents(rendered)


def render_notes(plane: ControlPlane, release: str, namespace: str, values: dict[str, Any]) -> str:
    """The chart's NOTES as ``helm install --dry-run`` prints them against ``plane`` (NOTES
    read ``.Capabilities`` and lookups, so ``helm template`` is not enough)."""
    command = [
        str(binary("helm")),
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--dry-run=client",
        "--kubeconfig",
        str(plane.kubeconfig),
        # The test plane has our CRD applied without Helm, which a (dry-run) install refuses
        # to adopt; the NOTES do not depend on it.
        "--set",
        "crds.install=false",
    ]
    for key, value in values.items():
        command += ["--set-json", f"{key}={json.dumps(value)}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.partition("NOTES:")[2]


def apply_objects(api: client.ApiClient, objects: list[dict[str, Any]]) -> None:
    """Create objects, ignoring ones that exist; custom kinds go through CustomObjectsApi."""
    from kubernetes import utils

    for obj in objects:
        try:
            try:
                utils.create_from_dict(api, obj)
            except AttributeError:  # no typed API for a custom resource
                _create_custom(api, obj)
        except utils.FailToCreateError as error:
            if not all(getattr(e, "status", None) == 409 for e in error.api_exceptions):
                raise
        except ApiException as error:
            if error.status != 409:
                raise


def _create_custom(api: client.ApiClient, obj: dict[str, Any]) -> None:
    group, version = obj["apiVersion"].split("/")
    plural = obj["kind"].lower() + "s"
    custom = client.CustomObjectsApi(api)
    namespace = obj["metadata"].get("namespace")
    if namespace:
        custom.create_namespaced_custom_object(group, version, namespace, plural, obj)
    else:
        custom.create_cluster_custom_object(group, version, plural, obj)


@dataclass
class OperatorProcess:
    """One running operator; ``user`` is its identity as the audit log records it."""

    process: subprocess.Popen[bytes]
    log_path: Path
    liveness_port: int
    metrics_port: int
    user: str
    extra: dict[str, Any] = field(default_factory=dict)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def metrics(self) -> str:
        """The operator's /metrics page, as Prometheus would scrape it."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(reply.read().decode())

    def ready(self) -> bool:
        """Whether /readyz (on the metrics port) answers 200: every watch of the operator has
        listed once, so its queue runs and a CR's reconcile waits for nothing but itself."""
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return bool(reply.status == 200)
        except OSError:  # refused while starting; HTTPError (503) while not ready
            return False

    def reconciles(self, result: str | None = None) -> float:
        """Reconciles finished so far (with ``result``: success, requeue_after, error), from
        /metrics: a reconcile that reads everything from the watches leaves no request in
        the audit log to count."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("jewelry_monitoring_reconciles_total{") and (
                result is None or f'result="{result}"' in line
            ):
                total += float(line.split()[-1])
        return total

    def reconciles_of(self, namespace: str, name: str) -> int:
        """Reconciles of one resource finished so far, from the log (at DEBUG, as started
        here, the queue logs each): the metric counts every resource's, the operator's
        other resources' resyncs and checks included."""
        return self.logs().count(f" reconciled {namespace}/{name}: ")

    def kill(self) -> None:
        """SIGKILL: no cleanup runs, as when a node dies."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def install_rbac(
    plane: ControlPlane,
    admin: client.ApiClient,
    release: str,
    namespace: str,
    values: dict[str, Any] | None = None,
    pod: tuple[str, str] | None = None,
) -> Path:
    """Apply the chart's RBAC and return a kubeconfig of its ServiceAccount.

    With ``pod`` (name, uid), the token is bound to that Pod, as a real replica's is: the
    audit log then names the pod in ``user.extra``, so two replicas are told apart."""
    core = client.CoreV1Api(admin)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    except ApiException as error:
        if error.status != 409:
            raise
    objects = render_chart(release, namespace, values)
    rbac = [o for o in objects if o["kind"] in RBAC_KINDS]
    apply_objects(admin, rbac)
    account = next(o for o in rbac if o["kind"] == "ServiceAccount")["metadata"]["name"]
    return service_account_kubeconfig(
        admin,
        plane.server,
        plane.ca_cert,
        namespace,
        account,
        plane.workdir / f"{release}-{namespace}{'-' + pod[0] if pod else ''}.kubeconfig",
        bound_pod=pod,
    )


# The operator as its image runs it: without the ``kubernetes`` package, which this
# virtualenv has for the tests (kopf would import it by itself, 51 MiB, and log in with it).
# ``cgroup`` (a cgroup.procs file, or "") is where the process puts itself before it execs.
_LAUNCHER_START = """
import os, sys
if sys.argv[1]:
    with open(sys.argv[1], "w") as procs:
        procs.write(str(os.getpid()))
sys.modules["kubernetes"] = None  # `import kubernetes` now fails, as in the image
from jewelry_monitoring.cli import main
"""
OPERATOR_LAUNCHER = _LAUNCHER_START + "sys.exit(main(sys.argv[2:]))\n"

# The same, with the heap sampled (devkit.heap_sampler, standard library only) into the
# report file named by the first argument, from when the modules `run` needs are imported.
# Frames tracemalloc keeps per block: deep enough to reach the operator's or kopf's frame
# under json and aiohttp; each frame costs time at every allocation.
HEAP_SAMPLED_FRAMES = 10
HEAP_SAMPLED_LAUNCHER = (
    "import sys\nreport = sys.argv.pop(1)\n"
    + _LAUNCHER_START
    + f"""
import kopf, jewelry_monitoring.handlers, jewelry_monitoring.memory, jewelry_monitoring.metrics
from devkit.heap_sampler import start_sampling
start_sampling(report, {HEAP_SAMPLED_FRAMES})
sys.exit(main(sys.argv[2:]))
"""
)


def start_operator(
    kubeconfig: Path,
    log_path: Path,
    user: str,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    cgroup: Path | None = None,
    heap_report: Path | None = None,
) -> OperatorProcess:
    """Start ``jewelry-monitoring run`` and wait until its liveness endpoint answers (on
    fresh ports again when another process took one of its two first); in the memory
    ``cgroup`` (a directory of the cgroup v1 memory controller) if given; with its heap
    sampled into ``heap_report`` if given (devkit.heap_sampler: slower, and bigger)."""
    launcher = [sys.executable, "-c", OPERATOR_LAUNCHER]
    if heap_report is not None:
        launcher = [sys.executable, "-c", HEAP_SAMPLED_LAUNCHER, str(heap_report)]

    def start(ports: list[int]) -> OperatorProcess:
        port, metrics_port = ports
        environment = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "JM_LIVENESS_PORT": str(port),
            "JM_METRICS_PORT": str(metrics_port),
            "JM_LOG_LEVEL": "DEBUG",
            **(env or {}),
        }
        output = StartOutput(log_path)
        log = log_path.open("ab")
        process = subprocess.Popen(
            [
                *launcher,
                str(cgroup / "cgroup.procs") if cgroup else "",
                "run",
                *args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
        )
        log.close()
        handle = OperatorProcess(process, log_path, port, metrics_port, user)
        try:
            _wait_live(handle, output, timeout)
        except BaseException:  # a stop signal (devkit.stopping) too: the caller has no handle
            with shielded():
                handle.stop()
            raise
        return handle

    return start_on_fresh_ports(start, count=2)


def _wait_live(handle: OperatorProcess, output: StartOutput, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not handle.alive():
            raise exited_during_start("operator", output.text())
        try:
            url = f"http://127.0.0.1:{handle.liveness_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"operator not live in {timeout}s:\n{output.tail(60)}")


def audit_writes(audit_log: Path, user: str, since_line: int = 0) -> list[str]:
    """Write requests (create/update/patch/delete) ``user`` made, from the apiserver audit log."""
    writes = []
    lines = audit_log.read_text().splitlines()
    for line in lines[since_line:]:
        entry = json.loads(line)
        if (
            entry.get("user", {}).get("username") != user
            or entry.get("stage") != "ResponseComplete"
        ):
            continue
        if entry.get("verb") in WRITE_VERBS:
            ref = entry.get("objectRef", {})
            target = "/".join(
                part
                for part in (ref.get("resource"), ref.get("subresource"), ref.get("name"))
                if part
            )
            writes.append(f"{entry['verb']} {target}")
    return writes


def audit_requests(audit_log: Path, user: str, since_line: int = 0) -> list[dict[str, Any]]:
    """Every request ``user`` made after line ``since_line``, once each (a watch is logged
    when it starts and again when it ends), as its audit entry."""
    seen: set[str] = set()
    requests = []
    for line in audit_log.read_text().splitlines()[since_line:]:
        entry = json.loads(line)
        if entry.get("user", {}).get("username") != user or entry["auditID"] in seen:
            continue
        seen.add(entry["auditID"])
        requests.append(entry)
    return requests


def audit_position(audit_log: Path) -> int:
    return len(audit_log.read_text().splitlines()) if audit_log.exists() else 0
