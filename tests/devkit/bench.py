"""`jm-dev bench`: how fast and how quiet the operator is, on the local control plane.

Measures, in one run on one machine:
- time from creating a JewelryMonitoring to Ready=True, one CR at a time and 20 at once
  (p50/p95/max), for a CR with every exporter, SLOs and dashboards (23 children);
- API requests the operator makes for one no-op reconcile (reads) and its writes (must be 0);
- writes of an idle operator over a quiet period (must be 0).
Figures are printed; nothing is asserted here (the tests do that).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from devkit.cluster import ControlPlane
from devkit.crs import GROUP, PLURAL, VERSION, CustomApi, cr_body, full_spec, make_secrets
from devkit.kubetools import api_client, install_missing_crds
from devkit.manifests import chart_crd_files
from devkit.operator_process import (
    WRITE_VERBS,
    audit_position,
    install_rbac,
    start_operator,
)
from devkit.stopping import shielded
from devkit.toolchain import prometheus_operator_crds

USER = "system:serviceaccount:jm-system:jm-jewelry-monitoring"


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


def _requests_since(audit_log: Path, start: int) -> list[str]:
    """The operator's requests after line ``start`` of the audit log, as "verb resource"."""
    requests = []
    for line in audit_log.read_text().splitlines()[start:]:
        entry = json.loads(line)
        if entry.get("user", {}).get("username") == USER:
            resource = entry.get("objectRef", {}).get("resource") or entry.get("requestURI")
            requests.append(f"{entry['verb']} {resource}")
    return requests


def run_bench(count: int, quiet_seconds: float, ready_timeout: float = 600) -> int:
    workdir: Path | None = None
    plane: ControlPlane | None = None
    operator = None
    clock: ReadyClock | None = None
    try:
        workdir = Path(tempfile.mkdtemp(prefix="jm-bench-"))
        plane = ControlPlane.create(workdir).start()
        api = api_client(plane.kubeconfig)
        install_missing_crds(api, [*chart_crd_files(), *prometheus_operator_crds()])
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
        clock = ReadyClock(*watch_source(api, namespace))
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
            clock.wait([name], ready_timeout)
            sequential.append(clock.ready_at[name] - started)
        burst_names = [f"burst-{index}" for index in range(count)]
        burst_started = {name: create(name) for name in burst_names}
        clock.wait(burst_names, ready_timeout)
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
        print(f"CR with every exporter ({exporters}), SLOs, dashboards and alert routing")
        print(f"create -> Ready, one at a time : {_percentiles(sequential)}")
        print(f"create -> Ready, {count} at once    : {_percentiles(burst)}")
        print(f"quiet again after              : {settled:.1f}s")
        print(f"lists of the CRs by the clock  : {clock.lists} (1 + one per expired watch)")
        for label, requests in (
            (f"idle for {quiet_seconds:.0f}s", idle),
            ("no-op reconcile", noop),
        ):
            writes = [r for r in requests if r.split()[0] in WRITE_VERBS]
            print(f"{label:<31}: {len(requests)} API requests, {len(writes)} writes")
            print(f"{'':<31}  {dict(Counter(requests).most_common(6))}")
        return 0
    except TimeoutError:
        if operator is not None:
            print(f"operator log, last lines:\n{operator.logs()[-3000:]}", file=sys.stderr)
        raise
    finally:
        with shielded():
            if clock is not None:
                clock.stop()
            if operator is not None:
                operator.stop()
            if plane is not None:
                plane.stop()
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jm-dev bench", description=__doc__.splitlines()[0])
    parser.add_argument("--crs", type=int, default=20, help="CRs per phase (default 20)")
    parser.add_argument("--quiet", type=float, default=10.0, help="idle seconds to watch")
    parser.add_argument("--short", action="store_true", help="CI size: 5 CRs, 5 idle seconds")
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds one CR (or the whole burst) may take to turn Ready: a guard against "
        "hangs, not a goal (default 600; at 100 CRs on a loaded machine a burst took 217 s)",
    )
    args = parser.parse_args(argv)
    if args.short:
        args.crs, args.quiet = 5, 5.0
    return run_bench(args.crs, args.quiet, args.timeout)
