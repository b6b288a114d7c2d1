"""The kopf layer, kept thin: every event becomes "reconcile this JewelryMonitoring".

No handler here computes or writes anything itself. Handlers are plain watch-event handlers
(``on.event``), which is why kopf stores no state on our objects and adds no finalizer.

Every replica watches, so a standby always knows every resource; only the leader (the
holder of the Lease, see ``leader.py``; a lone replica without leader election always leads)
runs the work queue and the resync. kopf's own peering is not used: it pauses kopf's
watchers only, never the queue, the resync or timers, so it cannot keep two replicas from
both writing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from jewelry_monitoring import metrics
from jewelry_monitoring.builders.common import MANAGED_BY, PREFIX
from jewelry_monitoring.builders.desired import MONITORING_KINDS
from jewelry_monitoring.config import OperatorConfig
from jewelry_monitoring.kube import REQUEST_TIMEOUT, WATCH_SECONDS, Kube, load_api_client
from jewelry_monitoring.leader import LeaderElector
from jewelry_monitoring.reconcile import Outcome, Reconciler
from jewelry_monitoring.selection import ALERTMANAGER, PROMETHEUS
from jewelry_monitoring.spec import API_GROUP, API_VERSION, KIND, PLURAL
from jewelry_monitoring.workqueue import Key, ReconcileQueue

CHILD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("networking.k8s.io", "v1", "networkpolicies"),
    ("monitoring.coreos.com", "v1", "servicemonitors"),
    ("monitoring.coreos.com", "v1", "prometheusrules"),
    ("monitoring.coreos.com", "v1alpha1", "alertmanagerconfigs"),
)
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
# A reconcile running longer than this is stuck (every API call has a timeout, so a healthy
# one takes seconds): /healthz then fails and the kubelet restarts the operator.
STUCK_AFTER_SECONDS = 300.0


class Reconciles:
    """The reconcile function the queue runs: measured, and counted while in flight so that a
    leader that stops can wait for running reconciles (threads cannot be cancelled)."""

    def __init__(self, reconcile: Callable[[str, str], Outcome]) -> None:
        self._reconcile = reconcile
        self._in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, namespace: str, name: str) -> Outcome:
        with self._lock:
            self._in_flight += 1
        started = time.perf_counter()
        try:
            outcome = self._reconcile(namespace, name)
        except Exception:
            metrics.RECONCILES.labels(result="error").inc()
            raise
        finally:
            metrics.RECONCILE_DURATION.observe(time.perf_counter() - started)
            with self._lock:
                self._in_flight -= 1
        result = "success" if outcome.retry_after is None else "requeue_after"
        metrics.RECONCILES.labels(result=result).inc()
        metrics.count_child_writes(outcome.writes)
        return outcome

    async def wait_idle(self, timeout: float) -> None:
        """Poll, rather than block a thread: the pool's threads may all be busy reconciling."""
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


class Controller:
    """What runs only while this replica leads: the queue and the resync."""

    def __init__(
        self,
        config: OperatorConfig,
        reconciles: Reconciles,
        report_failure: Callable[[str, str, str], None],
    ) -> None:
        self._config = config
        self._reconciles = reconciles
        self._report_failure = report_failure
        self.known: set[Key] = set()  # filled by every replica's watches, leading or not
        self.queue: ReconcileQueue | None = None
        self._resync: asyncio.Task[None] | None = None

    def request(self, key: Key) -> None:
        self.known.add(key)
        if self.queue is not None:
            self.queue.request(key)

    def request_all(self) -> None:
        if self.queue is not None:
            self.queue.request_all()

    def secret_changed(self, namespace: str, name: str) -> None:
        """A standby needs no Secret index: taking over reconciles everything anyway."""
        if self.queue is not None:
            self.queue.secret_changed(namespace, name)

    async def start(self) -> None:
        self.queue = ReconcileQueue(self._reconciles, self._report_failure)
        self.queue.known = self.known  # one set: the queue forgets deleted resources in it
        self.queue.request_all()
        self._resync = asyncio.get_running_loop().create_task(self._resync_forever())

    async def stop(self, drain_timeout: float) -> None:
        """Stop the resync and the queue, then wait for reconciles still running."""
        if self._resync is not None:
            self._resync.cancel()
            self._resync = None
        queue, self.queue = self.queue, None
        if queue is not None:
            await queue.close()
        metrics.QUEUE.clear()
        await self._reconciles.wait_idle(drain_timeout)

    async def _resync_forever(self) -> None:
        """Re-check every known resource now and then: catches what no watch reports."""
        while True:
            await asyncio.sleep(self._config.resync_seconds)
            self.request_all()


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our own prefix for anything kopf might store, chosen once; posting log lines as
    # Events is off because the reconciler records its own, meaningful Events.
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    settings.posting.enabled = False
    settings.watching.label_selectors["discovery.k8s.io", "endpointslices"] = ",".join(
        f"{key}={value}" for key, value in MANAGED.items()
    )
    # Every request has a timeout, kopf's as our own: a half-open connection must fail, not
    # silently stop the events (watches) or block forever (other requests).
    connect, read = REQUEST_TIMEOUT
    settings.watching.server_timeout = WATCH_SECONDS
    settings.watching.client_timeout = WATCH_SECONDS + read
    settings.watching.connect_timeout = connect
    settings.networking.connect_timeout = connect
    settings.networking.request_timeout = read
    config: OperatorConfig = memo.config
    lease = config.lease
    memo.stopping = threading.Event()
    if lease is None:
        kube = Kube(load_api_client())
        reconciler = Reconciler(kube, config.allowed_images)
        reconciles = Reconciles(reconciler.reconcile)
        memo.controller = Controller(config, reconciles, reconciler.report_failure)
        memo.elector = None
        metrics.LEADER.set(1)
        await memo.controller.start()
        _watch_secrets(kube, memo)
        return
    # The lease's requests must fit in the renew deadline, twice.
    lease_timeout = (min(connect, lease.renew_deadline / 4), lease.renew_deadline / 4)
    elector = memo.elector = LeaderElector(Kube(load_api_client(), timeout=lease_timeout), lease)
    kube = Kube(load_api_client(), may_write=elector.may_write)
    reconciler = Reconciler(kube, config.allowed_images)
    reconciles = Reconciles(reconciler.reconcile)
    controller = memo.controller = Controller(config, reconciles, reconciler.report_failure)

    async def stopped() -> None:
        await controller.stop(drain_timeout=lease.renew_deadline)

    memo.election = asyncio.get_running_loop().create_task(elector.run(controller.start, stopped))
    _watch_secrets(kube, memo)


def _watch_secrets(kube: Kube, memo: kopf.Memo) -> None:
    """Reconcile a resource when a Secret it references is created, changed or deleted.

    Our own metadata-only watch (kopf's would hold every Secret's data), one per watched
    namespace, in daemon threads: a blocked read must not hold up the operator's exit. Only
    the queue's index by Secret name decides whom an event concerns."""
    loop = asyncio.get_running_loop()
    controller: Controller = memo.controller

    def changed(namespace: str, name: str) -> None:
        loop.call_soon_threadsafe(controller.secret_changed, namespace, name)

    def missed() -> None:
        loop.call_soon_threadsafe(controller.request_all)

    for namespace in memo.config.namespaces or (None,):
        threading.Thread(
            target=kube.watch_names,
            args=("Secret", namespace, changed, missed, memo.stopping),
            name=f"watch-secrets-{namespace or 'all'}",
            daemon=True,
        ).start()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.stopping.set()
    if memo.elector is None:
        await memo.controller.stop(drain_timeout=10.0)
        return
    memo.elector.stop()
    await memo.election  # drains through the controller, then releases the Lease


@kopf.on.probe(id="reconciles", errors=kopf.ErrorsMode.PERMANENT)
async def reconciles_progress(memo: kopf.Memo, **_: Any) -> int:
    """Liveness: fails (kopf answers /healthz with 500) while a reconcile is stuck."""
    if "controller" not in memo:  # asked before the startup handler ran
        return 0
    controller: Controller = memo.controller
    stuck = controller.queue.running_longer_than(STUCK_AFTER_SECONDS) if controller.queue else {}
    if stuck:
        raise kopf.PermanentError(
            "stuck reconciles: "
            + ", ".join(f"{ns}/{name} for {age:.0f}s" for (ns, name), age in sorted(stuck.items()))
        )
    return len(controller.known)


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def jewelry_monitoring_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    if namespace:  # always set for a namespaced resource; kopf's type allows None
        memo.controller.request((namespace, name))


def controlling_owner(meta: Mapping[str, Any]) -> str | None:
    """The name of the JewelryMonitoring controlling a child, from its ownerReference: the
    owner label holds a shortened name when the resource's is longer than 63 characters."""
    for ref in meta.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == KIND:
            return str(ref["name"])
    return None


async def _child_changed(
    namespace: str | None, meta: Mapping[str, Any], memo: Any, **_: Any
) -> None:
    owner = controlling_owner(meta)
    if owner and namespace:
        memo.controller.request((namespace, owner))


for group, version, plural in CHILD_RESOURCES:
    kopf.on.event(group, version, plural, labels=MANAGED, id=f"child-{plural}")(_child_changed)
# The app Service's EndpointSlices carry its labels (the EndpointSlice controller copies a
# Service's labels to its slices), our owner label included: pods coming and going change
# AppTargetsFound. Selected on the server, so other slices never reach the operator.
kopf.on.event("discovery.k8s.io", "v1", "endpointslices", labels=MANAGED, id="app-endpoints")(
    _child_changed
)


@kopf.on.event(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    when=lambda name, **_: name in {*MONITORING_KINDS.values(), PROMETHEUS.crd, ALERTMANAGER.crd},
)
async def monitoring_crd_changed(memo: kopf.Memo, **_: Any) -> None:
    memo.controller.request_all()


@kopf.on.event("monitoring.coreos.com", "v1", "prometheuses")
async def prometheus_changed(memo: kopf.Memo, **_: Any) -> None:
    memo.controller.request_all()


@kopf.on.event("monitoring.coreos.com", "v1", "alertmanagers")
async def alertmanager_changed(memo: kopf.Memo, **_: Any) -> None:
    memo.controller.request_all()
