"""The kopf layer, kept thin: every event becomes "reconcile this JewelryMonitoring".

No handler here computes or writes anything itself. Handlers are plain watch-event handlers
(``on.event``), which is why kopf stores no state on our objects and adds no finalizer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import kopf

from jewelry_monitoring.builders.common import MANAGED_BY, OWNER_LABEL, PREFIX
from jewelry_monitoring.builders.desired import MONITORING_KINDS
from jewelry_monitoring.kube import REQUEST_TIMEOUT, WATCH_SECONDS, Kube, load_api_client
from jewelry_monitoring.reconcile import Reconciler
from jewelry_monitoring.spec import API_GROUP, API_VERSION, PLURAL
from jewelry_monitoring.workqueue import ReconcileQueue

CHILD_RESOURCES = (
    ("apps", "v1", "deployments"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("monitoring.coreos.com", "v1", "servicemonitors"),
    ("monitoring.coreos.com", "v1", "prometheusrules"),
)
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
# A reconcile running longer than this is stuck (every API call has a timeout, so a healthy
# one takes seconds): /healthz then fails and the kubelet restarts the operator.
STUCK_AFTER_SECONDS = 300.0


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
    settings.networking.connect_timeout = connect
    settings.networking.request_timeout = read
    kube = Kube(load_api_client())
    reconciler = Reconciler(kube, memo.config.allowed_images)
    memo.queue = ReconcileQueue(reconciler.reconcile, reconciler.report_failure)
    memo.resync = asyncio.get_running_loop().create_task(_resync(memo))
    memo.stopping = threading.Event()
    _watch_secrets(kube, memo)


def _watch_secrets(kube: Kube, memo: kopf.Memo) -> None:
    """Reconcile a resource when a Secret it references is created, changed or deleted.

    Our own metadata-only watch (kopf's would hold every Secret's data), one per watched
    namespace, in daemon threads: a blocked read must not hold up the operator's exit. Only
    the queue's index by Secret name decides whom an event concerns."""
    loop = asyncio.get_running_loop()

    def changed(namespace: str, name: str) -> None:
        loop.call_soon_threadsafe(memo.queue.secret_changed, namespace, name)

    def missed() -> None:
        loop.call_soon_threadsafe(memo.queue.request_all)

    for namespace in memo.config.namespaces or (None,):
        threading.Thread(
            target=kube.watch_names,
            args=("Secret", namespace, changed, missed, memo.stopping),
            name=f"watch-secrets-{namespace or 'all'}",
            daemon=True,
        ).start()


async def _resync(memo: kopf.Memo) -> None:
    """Re-check every known resource now and then: catches what no watch reports."""
    while True:
        await asyncio.sleep(memo.config.resync_seconds)
        memo.queue.request_all()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.stopping.set()
    memo.resync.cancel()
    await memo.queue.close()


@kopf.on.probe(id="reconciles", errors=kopf.ErrorsMode.PERMANENT)
async def reconciles_progress(memo: kopf.Memo, **_: Any) -> int:
    """Liveness: fails (kopf answers /healthz with 500) while a reconcile is stuck."""
    if "queue" not in memo:  # asked before the startup handler ran
        return 0
    stuck = memo.queue.running_longer_than(STUCK_AFTER_SECONDS)
    if stuck:
        raise kopf.PermanentError(
            "stuck reconciles: "
            + ", ".join(f"{ns}/{name} for {age:.0f}s" for (ns, name), age in sorted(stuck.items()))
        )
    return len(memo.queue.known)


@kopf.on.event(API_GROUP, API_VERSION, PLURAL)
async def jewelry_monitoring_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    if namespace:  # always set for a namespaced resource; kopf's type allows None
        memo.queue.request((namespace, name))


async def _child_changed(
    namespace: str | None, labels: Mapping[str, str], memo: Any, **_: Any
) -> None:
    owner = labels.get(OWNER_LABEL)
    if owner and namespace:
        memo.queue.request((namespace, owner))


for group, version, plural in CHILD_RESOURCES:
    kopf.on.event(group, version, plural, labels=MANAGED, id=f"child-{plural}")(_child_changed)


@kopf.on.event(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    when=lambda name, **_: (
        name in {*MONITORING_KINDS.values(), "prometheuses.monitoring.coreos.com"}
    ),
)
async def monitoring_crd_changed(memo: kopf.Memo, **_: Any) -> None:
    memo.queue.request_all()


@kopf.on.event("monitoring.coreos.com", "v1", "prometheuses")
async def prometheus_changed(memo: kopf.Memo, **_: Any) -> None:
    memo.queue.request_all()
