"""Coalescing per-resource reconcile queue, the controller-runtime workqueue idea.

kopf delivers many events (the CR, each child, CRDs, Prometheus objects); they all collapse
into "reconcile namespace/name". At most one reconcile runs per resource; requests that
arrive meanwhile make it run once more afterwards, not once per event. Failures retry with
exponential backoff; a periodic resync re-checks everything (reads only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from jewelry_monitoring import metrics
from jewelry_monitoring.reconcile import Outcome

Key = tuple[str, str]
log = logging.getLogger(__name__)
MAX_BACKOFF = 60.0


class ReconcileQueue:
    def __init__(self, reconcile: Callable[[str, str], Outcome]) -> None:
        self._reconcile = reconcile
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._dirty: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self.known: set[Key] = set()

    def request(self, key: Key) -> None:
        self.known.add(key)
        self._dirty.add(key)
        metrics.QUEUE.requested(key)
        task = self._running.get(key)
        if task is None or task.done():
            self._running[key] = asyncio.get_running_loop().create_task(self._run(key))

    def request_all(self) -> None:
        for key in sorted(self.known):
            self.request(key)

    def _later(self, delay: float, key: Key) -> None:
        def fire() -> None:
            self._timers.discard(handle)
            if key in self.known:
                self.request(key)

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(handle)

    async def _run(self, key: Key) -> None:
        while key in self._dirty:
            self._dirty.discard(key)
            metrics.QUEUE.started(key)
            try:
                outcome = await asyncio.to_thread(self._reconcile, *key)
            except Exception:
                failures = self._failures[key] = self._failures.get(key, 0) + 1
                delay = min(2.0 ** (failures - 1), MAX_BACKOFF)
                log.exception("reconcile of %s/%s failed, retrying in %.0fs", *key, delay)
                metrics.RETRIES.labels(reason="error").inc()
                self._later(delay, key)
                continue
            self._failures.pop(key, None)
            if outcome.gone:
                self.known.discard(key)
            if outcome.writes:
                log.info("reconciled %s/%s: %s", *key, "; ".join(outcome.writes))
            if outcome.retry_after is not None:
                metrics.RETRIES.labels(reason="requeue_after").inc()
                self._later(outcome.retry_after, key)

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        tasks = [task for task in self._running.values() if not task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
