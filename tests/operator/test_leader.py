"""The write fence of a replica with leader election, and how a stopping leader hands the
Lease over: no write of the old leader may land after the new leader's first.

The two replicas under a rollout's load are in tests/faults (the audit log's order of their
writes); these pin the mechanisms without an API server.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Callable
from typing import Any

import kopf
import pytest

from devkit.kubetools import api_at
from jewelry_monitoring import handlers
from jewelry_monitoring import kube as kube_module
from jewelry_monitoring.config import LeaseSettings, load
from jewelry_monitoring.kube import Kube, KubeError
from jewelry_monitoring.leader import LeaderElector

CONFIG_MAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "s"}}
WAIT = 30.0  # generous bound for a thread to reach a point: the machine is shared


class _Fenced(Kube):
    """A Kube whose writes are allowed while ``leading`` is set; its API server answers
    each request once ``answer`` is set (at once by default), 429 to the first ``refusals``."""

    def __init__(self, refusals: int = 0) -> None:
        self.leading = threading.Event()
        self.leading.set()
        super().__init__(api_at("http://127.0.0.1:1"), may_write=self.leading.is_set)
        self.answer = threading.Event()
        self.answer.set()
        self.sent = threading.Event()
        self.requests = 0
        self.refusals = refusals

    def _request(self, *_: Any) -> Any:
        self.requests += 1
        self.sent.set()
        if self.requests <= self.refusals:
            raise KubeError(429, "TooManyRequests", "the server has received too many requests")
        assert self.answer.wait(WAIT)
        return {}


def _in_thread(call: Any) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def test_a_write_waiting_for_a_free_slot_is_fenced_when_it_gets_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reconcile's write may wait for one of the client's slots for seconds under load;
    the fence must be asked when it is sent, not when it started waiting."""
    monkeypatch.setattr(kube_module, "MAX_IN_FLIGHT", 1)
    kube = _Fenced()
    kube.answer.clear()
    first, _ = _in_thread(lambda: kube.apply(CONFIG_MAP))  # holds the only slot
    assert kube.sent.wait(WAIT)
    waiting, errors = _in_thread(lambda: kube.apply(CONFIG_MAP))
    time.sleep(0.2)  # it is blocked on the slot (if it were not, it would be sent: fails)
    kube.leading.clear()
    kube.answer.set()
    first.join(WAIT)
    waiting.join(WAIT)
    assert kube.requests == 1
    assert [getattr(e, "reason", e) for e in errors] == ["NotLeader"]


def test_a_write_retried_after_too_many_requests_is_fenced_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kube = _Fenced(refusals=1)
    monkeypatch.setattr(time, "sleep", lambda _: kube.leading.clear())  # lost while pausing
    with pytest.raises(KubeError) as raised:
        kube.apply(CONFIG_MAP)
    assert raised.value.reason == "NotLeader" and kube.requests == 1


def test_writes_settled_waits_for_the_writes_let_through() -> None:
    kube = _Fenced()
    kube.answer.clear()
    thread, errors = _in_thread(lambda: kube.apply(CONFIG_MAP))
    assert kube.sent.wait(WAIT)
    kube.leading.clear()
    assert not kube.writes_settled(0.1)  # still on its way
    kube.answer.set()
    assert kube.writes_settled(WAIT)
    thread.join(WAIT)
    assert errors == []


class _OneLease(Kube):
    """An API server holding one Lease in memory; ``holders`` records each write's holder."""

    def __init__(self) -> None:
        super().__init__(api_at("http://127.0.0.1:1"))
        self.lease: dict[str, Any] | None = None
        self.holders: list[str] = []

    def get(
        self, kind: str, namespace: str | None, name: str, timeout: Any = None
    ) -> dict[str, Any] | None:
        return copy.deepcopy(self.lease)

    def create(self, obj: dict[str, Any], timeout: Any = None) -> dict[str, Any]:
        return self.replace(obj)

    def replace(self, obj: dict[str, Any], timeout: Any = None) -> dict[str, Any]:
        self.lease = copy.deepcopy(obj)
        self.holders.append(obj["spec"]["holderIdentity"])
        return obj


SETTINGS = LeaseSettings("jm-system", "leader", "me", 2.0, 1.0, 0.05)


def _renewals(store: _OneLease, count: int) -> int:
    """Wait (blocking, up to a long bound) until ``count`` more Lease writes have happened;
    how many did."""
    before = len(store.holders)
    deadline = time.monotonic() + 10 * SETTINGS.renew_deadline
    while len(store.holders) < before + count and time.monotonic() < deadline:
        time.sleep(0.01)
    return len(store.holders) - before


def _stop_at_once(
    elector: LeaderElector, store: _OneLease, writes_settled: Callable[[float], bool]
) -> dict[str, Any]:
    """Lead, get stopped at once, drain until three renewals have happened since the stop;
    what the elector looked like meanwhile."""
    seen: dict[str, Any] = {}

    async def started() -> None:
        elector.stop()

    async def drain() -> None:
        seen["renewals while draining"] = await asyncio.to_thread(_renewals, store, 3)
        seen["may write after draining"] = bool(elector.may_write())

    asyncio.run(elector.run(started, drain, writes_settled))
    return seen


def test_a_stopping_leader_renews_while_it_drains_and_releases_after_its_writes() -> None:
    """The drain, and then the wait for the writes already sent, may outlast the lease
    duration under load: the Lease stays ours meanwhile (else the standby could take it
    while an old write is still on its way), but once the drain is over nothing new is
    written. Only then is the Lease released."""
    store = _OneLease()
    elector = LeaderElector(store, SETTINGS)
    at_settling: dict[str, Any] = {}

    def writes_settled(timeout: float) -> bool:
        at_settling["may write"] = bool(elector.may_write())
        at_settling["renewals"] = _renewals(store, 3)
        assert store.lease is not None
        at_settling["holder"] = store.lease["spec"]["holderIdentity"]
        return True

    seen = _stop_at_once(elector, store, writes_settled)
    assert seen == {"renewals while draining": 3, "may write after draining": True}
    assert at_settling == {"may write": False, "renewals": 3, "holder": "me"}
    assert store.holders[-1] == "" and not elector.may_write()  # released


def test_a_stopping_leader_whose_writes_do_not_settle_leaves_the_lease_to_expire() -> None:
    store = _OneLease()
    elector = LeaderElector(store, SETTINGS)
    _stop_at_once(elector, store, lambda timeout: False)
    assert store.holders[-1] == "me" and not elector.may_write()


def test_a_new_leader_renews_while_it_waits_for_its_first_lists() -> None:
    """Starting (``on_started``) waits for the watches' first lists, up to a minute when one
    cannot list: the Lease must be renewed meanwhile, else the fence closes, a standby takes
    over, gets stuck the same way, and leadership ping-pongs with nobody writing."""
    store = _OneLease()
    elector = LeaderElector(store, SETTINGS)
    seen: dict[str, Any] = {}

    async def started() -> None:
        seen["renewals while starting"] = await asyncio.to_thread(_renewals, store, 3)
        seen["may write"] = bool(elector.may_write())
        elector.stop()

    async def stopped() -> None:
        pass

    asyncio.run(elector.run(started, stopped, lambda timeout: True))
    assert seen == {"renewals while starting": 3, "may write": True}


def test_a_leader_stopped_while_it_waits_for_its_first_lists_stops_and_hands_over() -> None:
    """The first lists never come (a watch that cannot list): a stop must not wait for them."""
    store = _OneLease()
    elector = LeaderElector(store, SETTINGS)
    stops: list[str] = []

    async def main() -> None:
        never = asyncio.Event()

        async def started() -> None:
            await never.wait()

        async def stopped() -> None:
            stops.append("stopped")

        election = asyncio.create_task(elector.run(started, stopped, lambda timeout: True))
        while not store.holders:
            await asyncio.sleep(0.01)
        elector.stop()
        await asyncio.wait_for(election, WAIT)

    asyncio.run(main())
    assert stops == ["stopped"]
    assert store.holders[-1] == ""  # released


class _SlowLeaseServer:
    """An API server that holds one Lease and takes ``delay`` seconds to answer each request,
    as a loaded one does; a request whose read timeout is shorter fails as urllib3's does.
    Stands in for ``Kube._request`` of every client the operator makes."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lease: dict[str, Any] | None = None
        self.renewals = 0
        self.reads = 0
        self.lock = threading.Lock()

    def __call__(self, method: str, path: str, body: Any, *args: Any) -> dict[str, Any] | None:
        timeout = args[3]  # after query, content type, accept
        assert "/leases" in path, f"no request but the Lease's expected, got {method} {path}"
        time.sleep(min(self.delay, timeout[1]))
        if timeout[1] < self.delay:
            raise KubeError(0, "ReadTimeoutError", f"read timed out. (read timeout={timeout[1]})")
        with self.lock:
            if method == "GET":
                self.reads += 1
                if self.lease is None:
                    raise KubeError(404, "NotFound", "leases not found")
                return copy.deepcopy(self.lease)
            version = (self.lease or {}).get("metadata", {}).get("resourceVersion", "0")
            if method == "PUT" and body["metadata"].get("resourceVersion") != version:
                raise KubeError(409, "Conflict", "the object has been modified")
            self.lease = copy.deepcopy(body)
            self.lease["metadata"]["resourceVersion"] = str(int(version) + 1)
            self.renewals += 1
            return copy.deepcopy(self.lease)


def test_renewals_slower_than_a_quarter_of_the_renew_deadline_keep_the_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under load the API server takes seconds per request. A renewal that is answered
    within the renew deadline renews the Lease, as with client-go: each request is bounded
    by the time left until the deadline, not by a fixed fraction of it (a quarter: the
    100-resource hand-over test lost its leader at load average 20)."""
    server = _SlowLeaseServer(delay=1.2)
    monkeypatch.setattr(Kube, "_request", server)
    monkeypatch.setattr(handlers, "load_api_client", lambda: api_at("http://127.0.0.1:1"))
    monkeypatch.setattr(handlers, "_watch_cluster", lambda *watched: None)
    monkeypatch.setattr(handlers, "FACTS_SYNC_SECONDS", 0.0)  # no watch: nothing to wait for
    environment = {
        "JM_LEADER_ELECTION": "true",
        "JM_LEASE_NAMESPACE": "jm-system",
        "JM_LEASE_DURATION_SECONDS": "8",
        "JM_RENEW_DEADLINE_SECONDS": "4",
        "JM_RETRY_PERIOD_SECONDS": "1",
    }
    memo = kopf.Memo(config=load(env=environment))
    held: list[bool] = []

    async def main() -> None:
        await handlers.start(settings=kopf.OperatorSettings(), memo=memo)
        for _ in range(60):  # three renew deadlines: 12 s
            await asyncio.sleep(0.2)
            held.append(bool(memo.elector.may_write()))
        await handlers.stop(memo=memo)

    asyncio.run(main())
    taken = held.index(True) if True in held else len(held)
    assert held[taken:] == [True] * (len(held) - taken), held
    assert taken < len(held) and server.renewals >= 3
    # A renewal is one request, an update of the Lease as last written: the only reads are
    # the first claim's and the release's.
    assert server.reads == 2


class _Recording(Kube):
    """A Kube that records the query and timeout of each request and answers it at once."""

    def __init__(self, may_write: Any) -> None:
        super().__init__(api_at("http://127.0.0.1:1"), may_write=may_write)
        self.sent: list[tuple[dict[str, str], tuple[float, float]]] = []

    def _request(self, method: str, path: str, body: Any, query: Any, *args: Any) -> Any:
        timeout = args[2]  # after content type, accept
        self.sent.append((dict(query or []), timeout))
        return {}


def test_a_write_let_through_the_fence_must_land_before_anyone_else_may_take_the_lease() -> None:
    """A leader that cannot renew stops writing at the renew deadline, but a write it sent
    just before may take longer (a loaded API server takes seconds): landing after the
    standby took the Lease (a lease duration after the last renewal), it would interleave
    with the new leader's writes. Each write therefore carries a deadline: the client's
    timeout and the API server's (its ``timeout`` parameter: the server drops the request
    after it), both ending before the Lease may be taken."""
    store = _OneLease()
    elector = LeaderElector(store, SETTINGS)

    async def claim() -> None:
        assert await elector._attempt(elector._try_claim)

    asyncio.run(claim())
    kube = _Recording(elector.may_write)
    kube.apply(CONFIG_MAP)
    ((query, timeout),) = kube.sent
    assert "timeout" in query, query
    server_timeout = float(query["timeout"].removesuffix("s"))
    assert 0 < server_timeout < SETTINGS.lease_duration
    assert 0 < timeout[1] <= server_timeout
