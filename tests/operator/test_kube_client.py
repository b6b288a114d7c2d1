"""Requests to the API, ours and kopf's, all have timeouts: a server that accepts and never
answers must fail a call, not block a reconcile (and its CR) or a watch forever."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf
import pytest

from devkit.kubetools import api_at
from jewelry_monitoring import handlers
from jewelry_monitoring.children import ChildCache
from jewelry_monitoring.config import load
from jewelry_monitoring.facts import ClusterFacts
from jewelry_monitoring.kube import LIST_PAGES_AT_ONCE, Kube, KubeError
from jewelry_monitoring.selection import SELECTING


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback TCP server that accepts connections and never sends a byte: the
    half-open connection of a vanished API server or proxy."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stopping.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stopping.set()
        thread.join()
        for connection in accepted:
            connection.close()
        listener.close()


def test_every_call_times_out_on_a_silent_server(silent_server: int) -> None:
    kube = Kube(api_at(f"http://127.0.0.1:{silent_server}"), timeout=(1.0, 0.5))
    calls = {
        "get": lambda: kube.get("Deployment", "shop", "x"),
        "list": lambda: kube.list("Deployment", "shop"),
        "apply": lambda: kube.apply(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "s"}}
        ),
        "patch_status": lambda: kube.patch_status("JewelryMonitoring", "s", "x", {}),
    }
    for what, call in calls.items():
        started = time.monotonic()
        error = _error_within(call, 60)  # generous: without a timeout it blocks forever
        assert error is not None, f"{what} still blocked after {time.monotonic() - started:.0f}s"
        assert isinstance(error, KubeError), (what, error)
        assert error.status == 0 and "timed out" in error.message.lower(), (what, error)


def _error_within(call: Callable[[], object], seconds: float) -> BaseException | None:
    """What ``call`` raised, run in a thread; None if it still runs after ``seconds``."""
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            call()
        except BaseException as error:
            outcome.append(error)
        else:
            outcome.append(AssertionError("the call succeeded against a silent server"))

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(seconds)
    return outcome[0] if outcome else None


class _OneObject(Kube):
    """A Kube whose GET answers with one fixed object."""

    def __init__(self, obj: dict[str, Any]) -> None:
        super().__init__(api_at("http://127.0.0.1:1"))
        self._obj = obj

    def get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._obj


def test_crd_just_created_is_not_established_rather_than_an_error() -> None:
    """The API server answers a fresh CRD with "conditions": null, for a moment."""
    assert not _OneObject({"status": {"conditions": None}}).crd_established("x")
    assert not _OneObject({}).crd_established("x")
    established = {"status": {"conditions": [{"type": "Established", "status": "True"}]}}
    assert _OneObject(established).crd_established("x")


def _as_if_listed(kube: Kube, facts: ClusterFacts, children: ChildCache, memo: kopf.Memo) -> None:
    """Instead of our own watches: their first lists, empty."""
    facts.set_crds({})
    for kind in SELECTING:
        facts.set_selecting(kind, [])
    facts.set_namespaces([])
    for listed in children.synced.values():
        listed.set()


def test_kopfs_own_requests_and_watches_have_timeouts_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """kopf's watches have no client timeout by default: a half-open watch would silently
    stop every event of its kind."""
    monkeypatch.setattr(handlers, "load_api_client", lambda: api_at("http://127.0.0.1:1"))
    monkeypatch.setattr(handlers, "_watch_cluster", _as_if_listed)
    settings = kopf.OperatorSettings()
    memo = kopf.Memo(config=load(env={}))

    async def start() -> None:
        await handlers.start(settings=settings, memo=memo)
        await handlers.stop(memo=memo)

    asyncio.run(start())
    assert settings.watching.server_timeout is not None
    assert settings.watching.client_timeout is not None
    assert settings.watching.client_timeout > settings.watching.server_timeout
    assert settings.watching.connect_timeout is not None
    assert settings.networking.connect_timeout is not None
    assert settings.networking.request_timeout is not None


class _Throttled(Kube):
    """A Kube whose API server answers 429 to the first ``refusals`` requests."""

    def __init__(self, refusals: int) -> None:
        super().__init__(api_at("http://127.0.0.1:1"))
        self.refusals = refusals
        self.requests = 0

    def _request(self, *_: Any) -> Any:
        self.requests += 1
        if self.requests <= self.refusals:
            raise KubeError(429, "TooManyRequests", "the server has received too many requests")
        return {"items": []}


def test_too_many_requests_is_retried_after_a_pause_then_given_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Priority and fairness answers 429 when a client floods it: a reconcile must not fail
    (and back off for up to a minute) for that, but it must not retry forever either."""
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    throttled = _Throttled(refusals=2)
    assert throttled.list("Deployment", "shop") == []
    assert throttled.requests == 3 and len(pauses) == 2 and all(p > 0 for p in pauses)

    refused = _Throttled(refusals=100)
    with pytest.raises(KubeError) as raised:
        refused.list("Deployment", "shop")
    assert raised.value.status == 429 and refused.requests == 6


class _Paged(Kube):
    """A Kube whose LIST serves ``count`` ConfigMaps in the pages it is asked for, and records
    each page's size and what the caller held when it asked."""

    def __init__(self, count: int, held: Callable[[], int]) -> None:
        super().__init__(api_at("http://127.0.0.1:1"))
        self._names = [f"c{index}" for index in range(count)]
        self._held = held
        self.pages: list[tuple[int, int]] = []  # (limit asked, objects held when asked)

    def _call(self, verb: str, path: str, **request: Any) -> Any:
        query = dict(request["query"])
        start, limit = int(query.get("continue") or 0), int(query["limit"])
        self.pages.append((limit, self._held()))
        served = self._names[start : start + limit]
        rest = str(start + limit) if start + limit < len(self._names) else ""
        return {
            "metadata": {"resourceVersion": "9", "continue": rest},
            "items": [{"metadata": {"name": name}, "data": {"big": "x" * 1000}} for name in served],
        }


def test_a_watch_lists_in_small_pages_and_keeps_only_what_it_reduces() -> None:
    """The API server decodes every object of a page whole, metadata-only lists too: a page
    of 500 PrometheusRules took longer than the 30 s read timeout at 1,100 resources, and the
    restarted operator reconciled before its lists were in (2,322 GETs, 221 MiB)."""
    reduced: list[dict[str, Any]] = []

    def reduce(obj: dict[str, Any]) -> dict[str, Any]:
        reduced.append(obj)
        return {"metadata": obj["metadata"]}

    kube = _Paged(1050, lambda: len(reduced))
    items, version = kube._list_all("ConfigMap", None, "", True, reduce)
    assert version == "9" and len(items) == 1050 and "data" not in items[0]
    assert {limit for limit, _ in kube.pages} == {100}
    assert [held for _, held in kube.pages] == list(range(0, 1050, 100))


class _Decoding(_Paged):
    """A ``_Paged`` that counts the pages decoded and not yet reduced at each moment: a page
    counts from its answer until its last object has been reduced."""

    def __init__(self, count: int) -> None:
        super().__init__(count, lambda: 0)
        self._lock = threading.Lock()
        self.open_pages = 0
        self.most_open = 0

    def _call(self, verb: str, path: str, **request: Any) -> Any:
        page = super()._call(verb, path, **request)
        with self._lock:
            self.open_pages += 1
            self.most_open = max(self.most_open, self.open_pages)
        page["items"][-1]["last"] = True
        time.sleep(0.005)  # decoding takes time: the other watches' pages come meanwhile
        return page

    def reduce(self, obj: dict[str, Any]) -> dict[str, Any]:
        if obj.get("last"):
            with self._lock:
                self.open_pages -= 1
        return {"metadata": obj["metadata"]}


def test_watches_listing_at_once_hold_few_decoded_pages() -> None:
    """A just-started operator's watches all list at once, and each page is held decoded
    whole until it is reduced: at 1,100 resources 16 lists' pages were 42.6 MiB of the
    restart's peak (issue 19). However many list together, only LIST_PAGES_AT_ONCE pages are
    decoded at a time, and every list still comes in whole."""
    kube = _Decoding(1000)
    with ThreadPoolExecutor(16) as pool:
        lists = list(
            pool.map(
                lambda _: kube._list_all("Deployment", None, "", False, kube.reduce), range(16)
            )
        )
    assert [len(items) for items, _ in lists] == [1000] * 16
    assert kube.open_pages == 0
    assert 1 <= kube.most_open <= LIST_PAGES_AT_ONCE
