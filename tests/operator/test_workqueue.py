"""The reconcile queue's timing, on an event loop whose clock jumps (minutes take milliseconds).

Counts reconciles, never measures time: retries in the prometheus-operator-CRDs-missing mode
(every 15 s), backoff of a failing resource, failure reports and stuck-worker detection.
"""

from __future__ import annotations

import asyncio
import selectors
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import kopf
import pytest

from jewelry_monitoring import handlers
from jewelry_monitoring.children import ChildCache
from jewelry_monitoring.config import load
from jewelry_monitoring.facts import ClusterFacts
from jewelry_monitoring.kube import KubeError
from jewelry_monitoring.reconcile import Outcome
from jewelry_monitoring.selection import SELECTING
from jewelry_monitoring.watched import Resources
from jewelry_monitoring.workqueue import FAILURES_BEFORE_REPORT, MAX_BACKOFF, ReconcileQueue

SHOP = ("jewelry", "shop")


class _JumpingSelector(selectors.DefaultSelector):
    """Instead of sleeping until the next timer, moves the loop's clock to it, but only
    while no reconcile runs in a worker thread: a loaded machine may take longer than any
    fixed real-time grace to finish one, and the clock must not run ahead of it."""

    def __init__(self, loop_clock: list[float], in_threads: list[int]) -> None:
        super().__init__()
        self._clock, self._in_threads = loop_clock, in_threads

    def select(self, timeout: float | None = None) -> list[Any]:
        if timeout is None:  # nothing scheduled: only a worker thread can wake us
            return super().select(None)
        if self._in_threads[0]:  # wait (in real time) for the worker to report
            return super().select(min(timeout, 0.05))
        ready = super().select(0)
        if not ready:
            self._clock[0] += timeout
        return ready


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock, self.in_threads = [0.0], [0]
        super().__init__(_JumpingSelector(self.clock, self.in_threads))

    # A test whose reconcile hangs on purpose lets the clock run past it.
    threads_may_hang = False

    def run_in_executor(self, executor: Any, func: Any, *args: Any) -> asyncio.Future[Any]:
        future = super().run_in_executor(executor, func, *args)
        if not self.threads_may_hang:
            self.in_threads[0] += 1
            future.add_done_callback(
                lambda _: self.in_threads.__setitem__(0, self.in_threads[0] - 1)
            )
        return future

    def time(self) -> float:
        return self.clock[0]


def run_virtual(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    loop = VirtualClockLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


class Recorder:
    """A fake reconcile: records when it ran, answers with ``outcome`` or raises ``error``."""

    def __init__(self, outcome: Outcome | None = None, error: Exception | None = None) -> None:
        self.outcome, self.error = outcome or Outcome(), error
        self.runs: list[tuple[float, tuple[str, str]]] = []
        self.loop: asyncio.AbstractEventLoop | None = None

    def __call__(self, namespace: str, name: str) -> Outcome:
        assert self.loop is not None
        self.runs.append((self.loop.time(), (namespace, name)))
        if self.error is not None:
            raise self.error
        return self.outcome

    def count(self, start: float, end: float) -> int:
        return sum(1 for when, _ in self.runs if start <= when < end)


async def _drive(
    queue: ReconcileQueue,
    seconds: float,
    event_every: float | None,
    resync_every: float,
    keys: tuple[tuple[str, str], ...] = (SHOP,),
) -> None:
    """Events for ``keys`` every ``event_every`` s and a resync every ``resync_every`` s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    next_event = loop.time() if event_every else end
    next_resync = loop.time() + resync_every
    while loop.time() < end:
        await asyncio.sleep(max(0.0, min(next_event, next_resync, end) - loop.time()))
        now = loop.time()
        if event_every and now >= next_event:
            for key in keys:
                queue.request(key)
            next_event += event_every
        if now >= next_resync:
            queue.request_all()
            next_resync += resync_every


def test_periodic_retry_keeps_one_deadline_whatever_the_events_and_resyncs() -> None:
    """CRDs missing: each reconcile asks for another in 15 s. Events and resyncs must not
    add a timer each (the rate grew without bound), and the quiet rate stays one per 15 s."""
    recorder = Recorder(Outcome(retry_after=15.0))

    async def main() -> None:
        recorder.loop = asyncio.get_running_loop()
        queue = ReconcileQueue(recorder)
        await _drive(queue, 60, event_every=5, resync_every=20)  # 12 events, 3 resyncs
        busy = recorder.count(0, 60)
        await _drive(queue, 600, event_every=None, resync_every=20)  # resyncs only
        quiet = recorder.count(60, 660)
        await queue.close()
        print(f"reconciles: {busy} in the busy minute, {quiet} in the 10 quiet minutes")
        assert busy <= 12 + 3 + 60 / 15
        # One per resync (30) and at most one retry between two resyncs.
        assert quiet <= 600 / 20 * 2 + 1

    run_virtual(main)


def test_targets_check_polls_at_its_interval_only_while_the_resource_exists() -> None:
    """spec.prometheus: each reconcile asks to look again in 60 s (no retry counted); once
    the resource is gone, no timer is left to run it again."""
    recorder = Recorder(Outcome(check_again_after=60.0))

    async def main() -> None:
        recorder.loop = asyncio.get_running_loop()
        queue = ReconcileQueue(recorder)
        queue.request(SHOP)
        await asyncio.sleep(600)
        polls = recorder.count(0, 600)
        recorder.outcome = Outcome(gone=True)
        await asyncio.sleep(600)  # the next poll finds it gone
        after = recorder.count(0, 1800)
        await asyncio.sleep(1200)
        assert recorder.count(0, 1800) == after, "polled a deleted resource"
        assert SHOP not in queue.known
        await queue.close()
        # 0, then every 60..72 s (jitter): 9 or 10 in ten minutes.
        assert 8 <= polls <= 10, polls

    run_virtual(main)


def test_failing_resource_backs_off_even_when_events_keep_coming() -> None:
    recorder = Recorder(error=KubeError(500, "InternalError", "etcd is down"))
    keys = tuple(("jewelry", f"shop-{i}") for i in range(10))

    async def main() -> None:
        recorder.loop = asyncio.get_running_loop()
        queue = ReconcileQueue(recorder)
        await _drive(queue, 300, event_every=0.5, resync_every=10, keys=keys)
        await queue.close()

    run_virtual(main)
    per_key = {key: [when for when, k in recorder.runs if k == key] for key in keys}
    # 1, 2, 4, 8, 16, 32, 60, 60... s (and up to 20% more): about 10 runs in 5 minutes,
    # not one per event (600).
    assert all(len(runs) <= 12 for runs in per_key.values()), per_key
    gaps = [runs[1] - runs[0] for runs in per_key.values()]
    assert all(gap >= 1 for gap in gaps)
    assert len(set(gaps)) > 1, "no jitter: keys that failed together retry in lockstep"
    last_gaps = [runs[-1] - runs[-2] for runs in per_key.values()]
    assert all(MAX_BACKOFF <= gap <= MAX_BACKOFF * 1.2 + 0.5 for gap in last_gaps), last_gaps


def test_repeated_failures_are_reported_once_they_persist_and_success_resets() -> None:
    recorder = Recorder(error=KubeError(403, "Forbidden", "configmaps is forbidden"))
    reports: list[tuple[str, str, str]] = []

    async def main() -> None:
        recorder.loop = asyncio.get_running_loop()
        queue = ReconcileQueue(
            recorder, lambda ns, name, message: reports.append((ns, name, message))
        )
        queue.request(SHOP)
        await asyncio.sleep(0.5)
        assert len(recorder.runs) == 1 and reports == []
        await asyncio.sleep(10)  # runs at ~1 s and ~3 s: the third failure is reported
        assert len(recorder.runs) >= FAILURES_BEFORE_REPORT
        assert reports[0][:2] == SHOP
        assert "403 Forbidden: configmaps is forbidden" in reports[0][2]
        recorder.error = None
        await asyncio.sleep(MAX_BACKOFF * 1.3)
        succeeded = len(recorder.runs)
        queue.request(SHOP)  # no failure left: an event runs at once
        await asyncio.sleep(0.01)
        assert len(recorder.runs) == succeeded + 1
        await queue.close()

    run_virtual(main)
    assert len(reports) == len(recorder.runs) - FAILURES_BEFORE_REPORT - 1


def test_stuck_reconcile_fails_the_liveness_probe() -> None:
    release = threading.Event()

    def hanging(namespace: str, name: str) -> Outcome:
        release.wait(30)
        return Outcome()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualClockLoop)
        loop.threads_may_hang = True
        controller = _controller(hanging)
        await controller.start()
        memo = kopf.Memo(controller=controller)
        controller.request(SHOP)
        queue = controller.queue
        assert queue is not None
        await asyncio.sleep(10)
        assert await handlers.reconciles_progress(memo=memo) == 1
        await asyncio.sleep(handlers.STUCK_AFTER_SECONDS)
        with pytest.raises(kopf.PermanentError, match="jewelry/shop for 3"):
            await handlers.reconciles_progress(memo=memo)
        release.set()
        await asyncio.sleep(0.1)
        while queue.running_longer_than(0):
            await asyncio.sleep(0)
        assert await handlers.reconciles_progress(memo=memo) == 1
        await controller.stop(drain_timeout=1)

    run_virtual(main)


def test_secret_index_requests_only_the_resources_that_reference_it() -> None:
    outcomes = {
        "shop": Outcome(secrets=frozenset({"db", "broker"})),
        "other": Outcome(secrets=frozenset({"db"})),
    }
    recorder = Recorder()

    def reconcile(namespace: str, name: str) -> Outcome:
        recorder(namespace, name)
        return outcomes[name]

    async def main() -> None:
        recorder.loop = asyncio.get_running_loop()
        queue = ReconcileQueue(reconcile)
        queue.request(("jewelry", "shop"))
        queue.request(("jewelry", "other"))
        await asyncio.sleep(1)
        recorder.runs.clear()
        queue.secret_changed("jewelry", "broker")
        queue.secret_changed("elsewhere", "db")  # same name, another namespace
        await asyncio.sleep(1)
        assert [key for _, key in recorder.runs] == [("jewelry", "shop")]
        outcomes["shop"] = Outcome()  # the spec no longer references any Secret
        queue.request(("jewelry", "shop"))
        await asyncio.sleep(1)
        recorder.runs.clear()
        queue.secret_changed("jewelry", "db")
        await asyncio.sleep(1)
        assert [key for _, key in recorder.runs] == [("jewelry", "other")]
        await queue.close()

    run_virtual(main)


def test_a_resource_recreated_while_its_deletion_is_reconciled_is_reconciled_again() -> None:
    """Delete and recreate under the same name: the new resource's ADDED event comes while
    the reconcile that finds the old one gone runs. Nothing else would ever ask for it again
    (no status of ours on it; its old children's deletions concern a resource no longer
    known), so that event must not be dropped with the old resource."""
    outcomes = [Outcome(gone=True), Outcome()]
    runs: list[tuple[str, str]] = []
    queues: list[ReconcileQueue] = []

    def reconcile(namespace: str, name: str) -> Outcome:
        runs.append((namespace, name))
        outcome = outcomes.pop(0)
        if outcome.gone:  # the event arrives meanwhile, in the event loop
            arrived = threading.Event()
            loop.call_soon_threadsafe(lambda: (queues[0].request(SHOP), arrived.set()))
            assert arrived.wait(30)
        return outcome

    async def main() -> None:
        queue = ReconcileQueue(reconcile)
        queues.append(queue)
        queue.request(SHOP)
        await asyncio.sleep(1)
        await queue.close()
        assert runs == [SHOP, SHOP]
        assert SHOP in queue.known

    loop = VirtualClockLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_the_queue_keeps_nothing_for_resources_whose_reconciles_are_over() -> None:
    """Hundreds of resources come and go over an operator's life: the queue must not keep a
    finished task (or anything else) per resource it has ever seen."""
    recorder = Recorder()
    keys = [("jewelry", f"shop-{index}") for index in range(100)]

    async def main() -> None:
        recorder.loop = asyncio.get_running_loop()
        queue = ReconcileQueue(recorder)
        for key in keys:
            queue.request(key)
        await asyncio.sleep(1)
        assert len(recorder.runs) == len(keys)
        assert queue._running == {}
        await queue.close()

    run_virtual(main)


def _controller(reconcile: Callable[[str, str], Outcome]) -> handlers.Controller:
    """A Controller whose watches have all listed (nothing to wait for), not started yet (a
    standby's)."""
    facts = ClusterFacts(frozenset())
    facts.set_crds({})
    for kind in SELECTING:
        facts.set_selecting(kind, [])
    facts.set_namespaces([])
    return handlers.Controller(
        load(env={}), handlers.Reconciles(reconcile), print, facts, ChildCache([])
    )


def test_a_standby_forgets_deleted_resources() -> None:
    """A standby never reconciles, so never finds a resource gone: the deletion event is
    what tells it, else what it knows grows with every resource ever created."""
    controller = _controller(Recorder())
    resources = Resources()
    memo = kopf.Memo(controller=controller, resources=resources)
    names = [f"shop-{index}" for index in range(100)]

    async def main() -> None:
        for event in ("ADDED", "DELETED"):
            for name in names:
                body = {"metadata": {"namespace": "jewelry", "name": name}}
                await handlers.jewelry_monitoring_changed(
                    type=event, namespace="jewelry", name=name, body=body, memo=memo
                )
            if event == "ADDED":
                assert await handlers.reconciles_progress(memo=memo) == len(names)

    asyncio.run(main())
    assert controller.known == set()
    assert controller._by_label == {}
    assert resources.get("jewelry", names[0]) is None  # nor are their bodies kept


def test_a_starting_leader_waits_for_all_first_lists_within_one_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """16 watches whose first lists come one after the other, each well within the deadline
    of the one before: the queue starts once the deadline has passed for them all together,
    not after up to 16 deadlines (16 minutes with a control plane that lists slowly)."""
    monkeypatch.setattr(handlers, "FACTS_SYNC_SECONDS", 1.0)
    facts = ClusterFacts(frozenset())
    children = ChildCache([f"children-{index}" for index in range(12)])
    lists = [*facts.synced.values(), *children.synced.values()]
    assert len(lists) == 16
    controller = handlers.Controller(
        load(env={}), handlers.Reconciles(Recorder()), print, facts, children
    )
    stopping = threading.Event()

    def list_one_after_the_other() -> None:
        for listed in lists:
            if stopping.wait(0.2):
                return
            listed.set()

    lister = threading.Thread(target=list_one_after_the_other, daemon=True)
    lister.start()

    async def main() -> None:
        await controller.start()
        await controller.stop(drain_timeout=1)

    try:
        asyncio.run(main())
        listed_when_started = sum(listed.is_set() for listed in lists)
    finally:
        stopping.set()
        lister.join()
    assert listed_when_started < len(lists)
