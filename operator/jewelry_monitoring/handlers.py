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
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from jewelry_monitoring import memory, metrics
from jewelry_monitoring.builders.common import MANAGED_BY, OWNER_LABEL, PREFIX, instance_label
from jewelry_monitoring.builders.desired import CHILD_KINDS
from jewelry_monitoring.children import ChildCache, watched_whole
from jewelry_monitoring.children import reduced as reduced_child
from jewelry_monitoring.config import OperatorConfig
from jewelry_monitoring.facts import ClusterFacts
from jewelry_monitoring.kube import (
    REQUEST_TIMEOUT,
    WATCH_SECONDS,
    ApiClient,
    Kube,
    Obj,
    load_api_client,
)
from jewelry_monitoring.leader import LeaderElector
from jewelry_monitoring.reconcile import WATCHED_CRDS, Outcome, Reconciler
from jewelry_monitoring.selection import SELECTING
from jewelry_monitoring.spec import API_GROUP, API_VERSION, PLURAL
from jewelry_monitoring.watched import Endpoints, Resources
from jewelry_monitoring.workqueue import Key, ReconcileQueue

# Sent to the API server with the child and EndpointSlice watches: only our own objects reach
# the operator, however many Deployments or ConfigMaps the cluster holds.
MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY},{OWNER_LABEL}"
# How long a starting leader waits, in all, for the first lists of its own watches (the
# facts' and the children's), and how often it looks.
FACTS_SYNC_SECONDS = 60.0
SYNC_POLL_SECONDS = 0.1
# CRs per page of kopf's first list of them (and after a watch expired).
CR_LIST_PAGE = 100
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
                drained = self._in_flight == 0
            if drained:  # after a burst: what its reconciles freed goes back to the system
                memory.release_free_memory()
        result = "success" if outcome.retry_after is None else "requeue_after"
        metrics.RECONCILES.labels(result=result).inc()
        metrics.count_child_writes(outcome.writes)
        metrics.PROMETHEUS_REQUESTS.inc(outcome.prometheus_requests)
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
        facts: ClusterFacts,
        children: ChildCache,
    ) -> None:
        self._config = config
        self._reconciles = reconciles
        self._report_failure = report_failure
        self._facts = facts
        self._children = children
        self.known: set[Key] = set()  # filled by every replica's watches, leading or not
        # (namespace, owner label) -> resource, for the children's watches: the label holds a
        # shortened name when the resource's is longer than 63 characters.
        self._by_label: dict[Key, Key] = {}
        self.queue: ReconcileQueue | None = None
        self._resync: asyncio.Task[None] | None = None

    def request(self, key: Key) -> None:
        self.known.add(key)
        self._by_label[key[0], instance_label(key[1])] = key
        if self.queue is not None:
            self.queue.request(key)

    def deleted(self, key: Key) -> None:
        """The resource's deletion event. A standby forgets it at once: it never reconciles,
        so would never find it gone. The leader reconciles it once more, and its queue
        forgets it when that reconcile finds it gone (with its timers and Secret index)."""
        label = (key[0], instance_label(key[1]))
        if self._by_label.get(label) == key:
            del self._by_label[label]
        if self.queue is not None:
            self.queue.request(key)
        else:
            self.known.discard(key)

    def request_owners(self, owners: set[Key]) -> None:
        """Reconcile the resources whose children changed, by (namespace, owner label)."""
        for owner in sorted(owners):
            key = self._by_label.get(owner)
            if key is None:
                continue
            if key in self.known:
                self.request(key)
            else:  # forgotten by the queue: deleted
                del self._by_label[owner]

    def request_all(self) -> None:
        if self.queue is not None:
            self.queue.request_all()

    def request_namespaces(self, namespaces: set[str]) -> None:
        """Reconcile the resources in ``namespaces`` (their labels changed)."""
        for key in sorted(self.known):
            if key[0] in namespaces:
                self.request(key)

    def secret_changed(self, namespace: str, name: str) -> None:
        """A standby needs no Secret index: taking over reconciles everything anyway."""
        if self.queue is not None:
            self.queue.secret_changed(namespace, name)

    async def start(self) -> None:
        """Start the queue once every watch behind ``facts`` and ``children`` has listed, or
        once FACTS_SYNC_SECONDS have passed for them all. Waits in the event loop, not in a
        thread: a leader stopped or deposed meanwhile cancels it at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FACTS_SYNC_SECONDS
        lists = [*self._facts.synced.values(), *self._children.synced.values()]

        def synced() -> bool:
            return all(listed.is_set() for listed in lists)

        while not synced() and loop.time() < deadline:
            await asyncio.sleep(SYNC_POLL_SECONDS)
        if not synced():
            logging.getLogger(__name__).warning(
                "CRDs, Prometheus/Alertmanager resources, namespaces or our children not listed "
                "after %.0fs: "
                "reconciling anyway, their watches re-queue what they change",
                FACTS_SYNC_SECONDS,
            )
        self.queue = ReconcileQueue(self._reconciles, self._report_failure)
        self.queue.known = self.known  # one set: the queue forgets deleted resources in it
        self.queue.request_all()
        if self._config.resync_seconds:
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
        """Re-check every known resource now and then (when JM_RESYNC_SECONDS asks for it): a
        safety net for what no watch reports. Each resource at its own random moment of the
        period, so that a resync is a trickle of reconciles rather than a burst of all of them
        at once."""
        period = self._config.resync_seconds
        while True:
            await asyncio.sleep(period)
            if self.queue is not None:
                self.queue.request_all(spread=period)


@kopf.on.login()
def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf's requests go with the credentials our own client uses (kubeconfig.py): without
    the ``kubernetes`` package kopf would otherwise fall back to its rudimentary logins,
    which know no exec plugin nor tokenFile, and reach a pod's API server by the DNS name
    kubernetes.default.svc instead of KUBERNETES_SERVICE_HOST. kopf logs in again on a 401
    and when ``expiration`` passes (an exec plugin's credentials)."""
    if "api" not in memo:
        memo.api = load_api_client()
    api: ApiClient = memo.api
    api.credentials.invalidate()  # called again after a 401: fetch anew
    credentials = api.credentials.get()
    return kopf.ConnectionInfo(
        server=credentials.server,
        ca_path=credentials.ca_file,
        ca_data=credentials.ca_data,
        insecure=credentials.insecure or None,
        token=credentials.token,
        certificate_path=credentials.cert_file,
        private_key_path=credentials.key_file,
        certificate_data=credentials.cert_data,
        private_key_data=credentials.key_data,
        default_namespace=credentials.namespace,
        expiration=credentials.expires,
    )


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our own prefix for anything kopf might store, chosen once; posting log lines as
    # Events is off because the reconciler records its own, meaningful Events.
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    settings.posting.enabled = False
    # Every request has a timeout, kopf's as our own: a half-open connection must fail, not
    # silently stop the events (watches) or block forever (other requests).
    connect, read = REQUEST_TIMEOUT
    settings.watching.server_timeout = WATCH_SECONDS
    settings.watching.client_timeout = WATCH_SECONDS + read
    settings.watching.connect_timeout = connect
    # kopf lists the CRs in one request unless told otherwise: a restarted operator would
    # hold every CR's JSON and its parsed copy at once.
    settings.watching.chunk_size = CR_LIST_PAGE
    settings.networking.connect_timeout = connect
    settings.networking.request_timeout = read
    config: OperatorConfig = memo.config
    lease = config.lease
    memo.stopping = threading.Event()
    facts = ClusterFacts(WATCHED_CRDS)
    children = ChildCache([_child_watch(kind, ns) for kind, ns in _child_watches(config)])
    metrics.READINESS.use(functools.partial(_unready_reason, facts, children, memo))
    memo.resources = Resources()
    memo.endpoints = Endpoints([_endpoints_watch(ns) for ns in _watched(config)])
    if lease is None:
        kube = Kube(load_api_client())
        reconciler = _reconciler(kube, facts, children, config, memo)
        reconciles = Reconciles(reconciler.reconcile)
        memo.controller = Controller(config, reconciles, reconciler.report_failure, facts, children)
        memo.elector = None
        metrics.LEADER.set(1)
        _watch_cluster(kube, facts, children, memo)
        # Not awaited: startup (and so /healthz) must not wait for the first lists.
        memo.starting = asyncio.get_running_loop().create_task(memo.controller.start())
        return
    # A client of its own (its own connections and request slots): renewals never wait
    # behind reconciles; the elector bounds each of its requests by the renew deadline.
    elector = memo.elector = LeaderElector(Kube(load_api_client()), lease)
    kube = Kube(load_api_client(), may_write=elector.may_write)
    reconciler = _reconciler(kube, facts, children, config, memo)
    reconciles = Reconciles(reconciler.reconcile)
    controller = memo.controller = Controller(
        config, reconciles, reconciler.report_failure, facts, children
    )
    _watch_cluster(kube, facts, children, memo)

    async def stopped() -> None:
        await controller.stop(drain_timeout=lease.renew_deadline)

    memo.election = asyncio.get_running_loop().create_task(
        elector.run(controller.start, stopped, kube.writes_settled)
    )


def _reconciler(
    kube: Kube, facts: ClusterFacts, children: ChildCache, config: OperatorConfig, memo: kopf.Memo
) -> Reconciler:
    """The reconciler with what the installer configured (a lone replica's or a leader's),
    reading the resources and their endpoints from the watches' copies."""
    return Reconciler(
        kube,
        facts,
        children,
        config.allowed_images,
        config.runbook_url_base,
        exporter_pods=config.exporter_pods,
        defaults=config.defaults,
        resources=memo.resources,
        endpoints=memo.endpoints,
    )


def _child_watches(config: OperatorConfig) -> list[tuple[str, str | None]]:
    """(kind, namespace or None for all) of each watch of our children."""
    return [(kind, ns) for kind in CHILD_KINDS for ns in config.namespaces or (None,)]


def _child_watch(kind: str, namespace: str | None) -> str:
    return f"children-{kind}-{namespace or 'all'}"


def _watched(config: OperatorConfig) -> list[str | None]:
    """Each watched namespace, or None for all."""
    return list(config.namespaces or (None,))


def _endpoints_watch(namespace: str | None) -> str:
    return f"endpoints-{namespace or 'all'}"


def _watch_cluster(kube: Kube, facts: ClusterFacts, children: ChildCache, memo: kopf.Memo) -> None:
    """Our own watches, beside kopf's of the CRs and EndpointSlices, each in a daemon thread
    (a blocked read must not hold up the operator's exit):

    - Secrets, metadata only (kopf's watch would hold every Secret's data), one watch per
      watched namespace, into ``facts`` (their versions): the queue's index by Secret name
      decides whom a change concerns;
    - our children, selected by their labels on the server, one watch per kind (and watched
      namespace), into ``children``: a change re-queues the resource they are labelled for;
    - CRDs (metadata only, then a GET of the few we care about when one changes),
      Prometheus and Alertmanager resources and namespaces (metadata only), into
      ``facts``: a change that a reconcile could see re-queues the resources it can
      affect, anything else nothing.
    """
    loop = asyncio.get_running_loop()
    controller: Controller = memo.controller

    def later(call: Callable[..., None], *args: Any) -> Callable[[], None]:
        """``call(*args)`` in the event loop, from a watch's thread."""

        def schedule() -> None:
            loop.call_soon_threadsafe(call, *args)

        return schedule

    def secrets_listed(namespace: str | None) -> Callable[[list[Obj]], None]:
        def listed(secrets: list[Obj]) -> None:
            for key in sorted(facts.set_secrets(namespace, secrets)):
                loop.call_soon_threadsafe(controller.secret_changed, *key)

        return listed

    def secret_changed(event_type: str, secret: Obj) -> None:
        loop.call_soon_threadsafe(
            controller.secret_changed, *facts.secret_event(event_type, secret)
        )

    def established(name: str) -> bool:
        return name in facts.crd_names and kube.crd_established(name)

    def crds_listed(crds: list[Obj]) -> None:
        if facts.set_crds(
            {c["metadata"]["name"]: established(c["metadata"]["name"]) for c in crds}
        ):
            later(controller.request_all)()

    def crd_changed(event_type: str, crd: Obj) -> None:
        name = crd["metadata"]["name"]
        if facts.set_crd(name, event_type != "DELETED" and established(name)):
            later(controller.request_all)()

    def selecting_listed(kind: str) -> Callable[[list[Obj]], None]:
        def listed(resources: list[Obj]) -> None:
            if facts.set_selecting(kind, resources):
                later(controller.request_all)()

        return listed

    def selecting_changed(kind: str) -> Callable[[str, Obj], None]:
        def changed(event_type: str, resource: Obj) -> None:
            if facts.selecting_event(kind, event_type, resource):
                later(controller.request_all)()

        return changed

    def children_listed(kind: str, namespace: str | None) -> Callable[[list[Obj]], None]:
        def listed(objects: list[Obj]) -> None:
            owners = children.listed(_child_watch(kind, namespace), kind, namespace or "", objects)
            if owners:
                later(controller.request_owners, owners)()

        return listed

    def child_changed(kind: str) -> Callable[[str, Obj], None]:
        def changed(event_type: str, obj: Obj) -> None:
            owners = children.event(kind, event_type, obj)
            if owners:
                later(controller.request_owners, owners)()

        return changed

    endpoints: Endpoints = memo.endpoints

    def endpoints_listed(namespace: str | None) -> Callable[[list[Obj]], None]:
        def listed(slices: list[Obj]) -> None:
            owners = endpoints.listed(_endpoints_watch(namespace), namespace or "", slices)
            if owners:
                later(controller.request_owners, owners)()

        return listed

    def endpoints_changed(event_type: str, obj: Obj) -> None:
        owners = endpoints.event(event_type, obj)
        if owners:
            later(controller.request_owners, owners)()

    def namespaces_listed(namespaces: list[Obj]) -> None:
        changed = facts.set_namespaces(namespaces)
        if changed:
            later(controller.request_namespaces, changed)()

    def namespace_changed(event_type: str, namespace: Obj) -> None:
        if facts.namespace_event(event_type, namespace):
            later(controller.request_namespaces, {namespace["metadata"]["name"]})()

    watches: list[tuple[str, Callable[..., None], tuple[Any, ...]]] = [
        (
            f"secrets-{namespace or 'all'}",
            kube.mirror,
            ("Secret", secrets_listed(namespace), secret_changed, memo.stopping, True, namespace),
        )
        for namespace in memo.config.namespaces or (None,)
    ]
    watches += [
        (
            _child_watch(kind, namespace),
            kube.mirror,
            (
                kind,
                children_listed(kind, namespace),
                child_changed(kind),
                memo.stopping,
                not watched_whole(kind),
                namespace,
                MANAGED_SELECTOR,
                reduced_child,
            ),
        )
        for kind, namespace in _child_watches(memo.config)
    ]
    # The app Services' EndpointSlices carry their labels (the EndpointSlice controller
    # copies a Service's labels to its slices), ours included: pods coming and going change
    # AppTargetsFound. The owner label names the resource.
    watches += [
        (
            _endpoints_watch(namespace),
            kube.mirror,
            (
                "EndpointSlice",
                endpoints_listed(namespace),
                endpoints_changed,
                memo.stopping,
                False,
                namespace,
                MANAGED_SELECTOR,
            ),
        )
        for namespace in _watched(memo.config)
    ]
    watches += [
        (
            "crds",
            kube.mirror,
            ("CustomResourceDefinition", crds_listed, crd_changed, memo.stopping, True),
        ),
        *(
            (
                f"selecting-{kind}",
                kube.mirror,
                (kind, selecting_listed(kind), selecting_changed(kind), memo.stopping),
            )
            for kind in SELECTING
        ),
        (
            "namespaces",
            kube.mirror,
            ("Namespace", namespaces_listed, namespace_changed, memo.stopping, True),
        ),
    ]
    for name, watch, args in watches:
        threading.Thread(target=watch, args=args, name=f"watch-{name}", daemon=True).start()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.stopping.set()
    if memo.elector is None:
        memo.starting.cancel()  # if it still waits for the first lists
        with contextlib.suppress(asyncio.CancelledError):
            await memo.starting
        await memo.controller.stop(drain_timeout=10.0)
        return
    memo.elector.stop()
    await memo.election  # drains through the controller, then releases the Lease


def _unready_reason(facts: ClusterFacts, children: ChildCache, memo: kopf.Memo) -> str:
    """Readiness (/readyz on the metrics port), apart from liveness: every watch of ours has
    listed once, and the replica leads or stands by (its election runs); not while stopping.
    A rollout of several replicas then replaces one only when the next one knows the cluster.
    Empty when ready, else why not (the probe's answer)."""
    if memo.stopping.is_set():
        return "stopping"
    if not all(listed.is_set() for listed in facts.synced.values()):
        return "CRDs, Prometheus and Alertmanager resources or namespaces not listed yet"
    if not children.complete():
        return "the operator's children not listed yet"
    election: asyncio.Task[None] | None = memo.get("election")
    if election is not None and election.done():
        return "leader election ended"
    return ""


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
async def jewelry_monitoring_changed(
    type: str | None,  # kopf's name for the watch event's type
    namespace: str | None,
    name: str,
    body: Mapping[str, Any],
    memo: Any,
    **_: Any,
) -> None:
    """Kept as delivered (``Resources``): the reconcile reads the resource from here."""
    if not namespace:  # always set for a namespaced resource; kopf's type allows None
        return
    memo.resources.delivered(type, dict(body))
    if type == "DELETED":
        memo.controller.deleted((namespace, name))
    else:
        memo.controller.request((namespace, name))
