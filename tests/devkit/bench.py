"""`jm-dev bench`: how fast and how quiet the operator is, on the local control plane.

Measures, in one run on one machine:
- time from creating a JewelryMonitoring to Ready=True, one CR at a time and 20 at once
  (p50/p95/max), for a CR with every exporter, SLOs and dashboards (19 children);
- API requests the operator makes for one no-op reconcile (reads) and its writes (must be 0);
- writes of an idle operator over a quiet period (must be 0).
Figures are printed; nothing is asserted here (the tests do that).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from kubernetes import client, watch

from devkit.cluster import ControlPlane
from devkit.crs import GROUP, PLURAL, VERSION, CustomApi, cr_body, full_spec, make_secrets
from devkit.kubetools import api_client, apply_crds
from devkit.operator_process import (
    CHART,
    WRITE_VERBS,
    audit_position,
    install_rbac,
    start_operator,
)
from devkit.toolchain import prometheus_operator_crds

USER = "system:serviceaccount:jm-system:jm-jewelry-monitoring"


class ReadyClock:
    """Watches the CRs and stamps the moment each first reports Ready=True."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ready_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(api, namespace), daemon=True)
        self._thread.start()

    def _run(self, api: client.ApiClient, namespace: str) -> None:
        stream = watch.Watch()
        custom = CustomApi(api)
        while not self._stop.is_set():
            for event in stream.stream(
                custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                timeout_seconds=5,
            ):
                obj = event["object"]
                status = obj.get("status", {})
                ready = any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in status.get("conditions", [])
                )
                name = obj["metadata"]["name"]
                if ready and name not in self.ready_at:
                    self.ready_at[name] = time.monotonic()
                if self._stop.is_set():
                    return

    def wait(self, names: list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not all(n in self.ready_at for n in names):
            time.sleep(0.02)
        missing = [n for n in names if n not in self.ready_at]
        if missing:
            raise TimeoutError(f"not Ready in {timeout}s: {missing}")

    def stop(self) -> None:
        self._stop.set()


def _percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"n={len(ordered)} p50={statistics.median(ordered):.3f}s p95={p95:.3f}s "
        f"max={ordered[-1]:.3f}s"
    )


def _requests_since(audit_log: Path, start: int) -> list[str]:
    """The operator's requests after line ``start`` of the audit log, as "verb resource"."""
    requests = []
    for line in audit_log.read_text().splitlines()[start:]:
        entry = json.loads(line)
        if entry.get("user", {}).get("username") == USER:
            resource = entry.get("objectRef", {}).get("resource") or entry.get("requestURI")
            requests.append(f"{entry['verb']} {resource}")
    return requests


def run_bench(count: int, quiet_seconds: float) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="jm-bench-"))
    plane = ControlPlane.create(workdir).start()
    operator = None
    try:
        api = api_client(plane.kubeconfig)
        apply_crds(api, sorted((CHART / "crds").glob("*.yaml")))
        apply_crds(api, prometheus_operator_crds())
        operator = start_operator(
            install_rbac(plane, api, "jm", "jm-system"),
            workdir / "operator.log",
            USER,
            env={"JM_LOG_LEVEL": "WARNING"},
        )
        namespace = f"bench-{uuid.uuid4().hex[:6]}"
        client.CoreV1Api(api).create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace))
        )
        make_secrets(api, namespace)
        clock = ReadyClock(api, namespace)
        custom = CustomApi(api)

        def create(name: str) -> float:
            started = time.monotonic()
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, cr_body(name, full_spec())
            )
            return started

        sequential = []
        for index in range(count):
            name = f"one-{index}"
            started = create(name)
            clock.wait([name])
            sequential.append(clock.ready_at[name] - started)
        burst_names = [f"burst-{index}" for index in range(count)]
        burst_started = {name: create(name) for name in burst_names}
        clock.wait(burst_names)
        burst = [clock.ready_at[n] - burst_started[n] for n in burst_names]
        clock.stop()

        # The controller manager keeps updating the new Deployments' status for a while, and
        # each update is a reason to re-check a CR: wait until that settles, then watch.
        settle_started = time.monotonic()
        while time.monotonic() - settle_started < 120:
            start = audit_position(plane.audit_log)
            time.sleep(2)
            if not _requests_since(plane.audit_log, start):
                break
        settled = time.monotonic() - settle_started
        start = audit_position(plane.audit_log)
        time.sleep(quiet_seconds)
        idle = _requests_since(plane.audit_log, start)

        start = audit_position(plane.audit_log)
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "one-0", {"metadata": {"labels": {"touch": "1"}}}
        )
        time.sleep(3)
        noop = _requests_since(plane.audit_log, start)

        exporters = len(full_spec()["exporters"])
        print(f"CR with every exporter ({exporters}), SLOs and dashboards")
        print(f"create -> Ready, one at a time : {_percentiles(sequential)}")
        print(f"create -> Ready, {count} at once    : {_percentiles(burst)}")
        print(f"quiet again after              : {settled:.1f}s")
        for label, requests in (
            (f"idle for {quiet_seconds:.0f}s", idle),
            ("no-op reconcile", noop),
        ):
            writes = [r for r in requests if r.split()[0] in WRITE_VERBS]
            print(f"{label:<31}: {len(requests)} API requests, {len(writes)} writes")
            print(f"{'':<31}  {dict(Counter(requests).most_common(6))}")
        return 0
    finally:
        if operator is not None:
            operator.stop()
        plane.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jm-dev bench", description=__doc__.splitlines()[0])
    parser.add_argument("--crs", type=int, default=20, help="CRs per phase (default 20)")
    parser.add_argument("--quiet", type=float, default=10.0, help="idle seconds to watch")
    parser.add_argument("--short", action="store_true", help="CI size: 5 CRs, 5 idle seconds")
    args = parser.parse_args(argv)
    if args.short:
        args.crs, args.quiet = 5, 5.0
    return run_bench(args.crs, args.quiet)
