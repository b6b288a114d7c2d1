"""The kopf layer, kept thin: every event becomes "reconcile this JewelryMonitoring".

No handler here computes or writes anything itself. Handlers are plain watch-event handlers
(``on.event``), which is why kopf stores no state on our objects and adds no finalizer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kopf

from jewelry_monitoring.builders.common import MANAGED_BY, OWNER_LABEL, PREFIX
from jewelry_monitoring.builders.desired import MONITORING_KINDS
from jewelry_monitoring.kube import Kube, load_api_client
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


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our own prefix for anything kopf might store, chosen once; posting log lines as
    # Events is off because the reconciler records its own, meaningful Events.
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    settings.posting.enabled = False
    settings.watching.server_timeout = 270
    reconciler = Reconciler(Kube(load_api_client()), memo.config.allowed_images)
    memo.queue = ReconcileQueue(reconciler.reconcile)
    memo.resync = asyncio.get_running_loop().create_task(_resync(memo))


async def _resync(memo: kopf.Memo) -> None:
    """Re-check every known resource now and then: catches what no watch reports."""
    while True:
        await asyncio.sleep(memo.config.resync_seconds)
        memo.queue.request_all()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    memo.resync.cancel()
    await memo.queue.close()


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
