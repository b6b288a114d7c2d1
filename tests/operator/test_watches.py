"""Our own watches (``Kube.mirror``), against scripted lists and watch streams: an event
counts as handled only once its callback has completed, and no failure ends a watch."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import kopf
from kubernetes import client

from jewelry_monitoring import handlers
from jewelry_monitoring.children import ChildCache
from jewelry_monitoring.config import load
from jewelry_monitoring.facts import ClusterFacts
from jewelry_monitoring.kube import Kube, KubeError
from jewelry_monitoring.reconcile import WATCHED_CRDS, Outcome
from jewelry_monitoring.watched import Endpoints

Obj = dict[str, Any]
Event = tuple[str, Obj]
WAIT = 30.0  # generous bound for a thread to reach a point: the machine is shared
CRD = sorted(WATCHED_CRDS)[0]


def _object(name: str, version: str) -> Obj:
    return {"metadata": {"name": name, "resourceVersion": version}}


class _Stopping(threading.Event):
    """The watches' stop flag, whose backoff pauses take no time."""

    def wait(self, timeout: float | None = None) -> bool:
        return self.is_set()


class _Scripted(Kube):
    """A Kube whose lists and watch streams are scripted per kind: a list answers its items
    at version "1"; a watch from a version answers the events scripted after it, then (with
    nothing scripted) waits until stopped. Records what was asked."""

    def __init__(self, stopping: threading.Event, events: dict[str, list[Event]]) -> None:
        super().__init__(client.ApiClient(client.Configuration()))
        self.stopping = stopping
        self.events = events
        self.asked: list[str] = []

    def _list_all(
        self,
        kind: str,
        namespace: str | None,
        label_selector: str,
        metadata_only: bool,
        reduce: Any = None,
    ) -> tuple[list[Obj], str]:
        self.asked.append(f"list {kind}")
        return [], "1"

    def _watch(self, kind: str, *request: Any) -> Iterator[tuple[str, Obj]]:
        version = request[2]  # after namespace and label selector
        self.asked.append(f"watch {kind} from {version}")
        after = [
            (kind_, obj)
            for kind_, obj in self.events.get(kind, [])
            if int(obj["metadata"]["resourceVersion"]) > int(version)
        ]
        if not after and not self.stopping.wait(WAIT):  # the script is over
            self.stopping.set()
        yield from after

    def get(self, kind: str, namespace: str | None, name: str) -> Obj | None:
        """A CRD, Established; the first GET times out."""
        self.asked.append(f"get {kind} {name}")
        if self.asked.count(f"get {kind} {name}") == 1:
            raise KubeError(504, "Timeout", "the server was unable to return a response in time")
        return {"status": {"conditions": [{"type": "Established", "status": "True"}]}}


def _mirror(kube: _Scripted, changed: Callable[[str, Obj], None]) -> None:
    """Run the watch of ConfigMaps in this thread until its script is over."""
    kube.mirror("ConfigMap", lambda objects: None, changed, kube.stopping)


def test_an_event_whose_callback_failed_is_handled_again() -> None:
    """A callback that fails (a GET in it timed out) has not handled its event: resuming the
    watch past it would lose it for good."""
    events = [("ADDED", _object("a", "2")), ("MODIFIED", _object("a", "3"))]
    kube = _Scripted(_Stopping(), {"ConfigMap": events})
    handled: list[str] = []

    def changed(event_type: str, obj: Obj) -> None:
        version = obj["metadata"]["resourceVersion"]
        if version == "3" and "3 failed" not in handled:
            handled.append("3 failed")
            raise KubeError(504, "Timeout", "the server was unable to return a response in time")
        handled.append(version)

    _mirror(kube, changed)
    assert handled == ["2", "3 failed", "3"]


def test_a_watch_goes_on_after_any_error_in_a_callback() -> None:
    """Not only the API's errors: a bug in a callback, an unreadable event. The watch starts
    afresh (a list) rather than ending its thread, which nothing would ever restart."""
    kube = _Scripted(_Stopping(), {"ConfigMap": [("ADDED", _object("a", "2"))]})
    handled: list[str] = []

    def changed(event_type: str, obj: Obj) -> None:
        if not handled:
            handled.append("failed")
            raise ValueError("a bug")
        handled.append(obj["metadata"]["name"])

    _mirror(kube, changed)
    assert handled == ["failed", "a"]
    assert kube.asked[:3] == ["list ConfigMap", "watch ConfigMap from 1", "list ConfigMap"]


def test_a_crd_established_while_reading_it_failed_is_not_missed() -> None:
    """prometheus-operator's CRD becomes Established while the GET that the CRD watch's
    callback makes fails: until the next relist (a 410, a restart) the operator would
    believe the CRD missing, and make no ServiceMonitor or PrometheusRule."""
    stopping = threading.Event()
    kube = _Scripted(stopping, {"CustomResourceDefinition": [("MODIFIED", _object(CRD, "2"))]})
    config = load(env={})
    facts = ClusterFacts(WATCHED_CRDS)
    children = ChildCache(
        [handlers._child_watch(*watch) for watch in handlers._child_watches(config)]
    )
    controller = handlers.Controller(
        config, handlers.Reconciles(lambda namespace, name: Outcome()), print, facts, children
    )
    endpoints = Endpoints([handlers._endpoints_watch(ns) for ns in handlers._watched(config)])
    memo = kopf.Memo(config=config, stopping=stopping, controller=controller, endpoints=endpoints)

    async def main() -> None:
        handlers._watch_cluster(kube, facts, children, memo)
        deadline = asyncio.get_running_loop().time() + WAIT
        while not facts.established(CRD) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)

    try:
        asyncio.run(main())
    finally:
        stopping.set()
    assert facts.established(CRD)
    assert kube.asked.count(f"get CustomResourceDefinition {CRD}") == 2
