"""Coalescing per-resource reconcile queue, the controller-runtime workqueue idea.

kopf delivers many events (the CR, each child, CRDs, Prometheus objects); they all collapse
into "reconcile namespace/name". At most one reconcile runs per resource; requests that
arrive meanwhile make it run once more afterwards, not once per event. A periodic resync
re-checks everything (reads only).

Timing, per resource: at most ONE pending deadline ("reconcile again no later than T"),
the earliest asked for, as controller-runtime's ``AddAfter``; a run clears it, because the
run is what it waited for. Failures back off exponentially, and a failing resource stays
backed off even when events or resyncs ask for it: they only mark it dirty for the deadline.
Delays get jitter, so resources that failed together do not retry in lockstep.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from jewelry_monitoring import metrics
from jewelry_monitoring.kube import KubeError
from jewelry_monitoring.reconcile import Outcome

Key = tuple[str, str]
log = logging.getLogger(__name__)
MAX_BACKOFF = 60.0
JITTER = 0.2  # a delay d becomes d..d*(1+JITTER)
# After this many consecutive failures the resource's status says so (Ready=False).
FAILURES_BEFORE_REPORT = 3
# Reconciles running at once. They mostly wait on the API server, so more threads than
# cores pay off: with asyncio's default pool (cores + 4) a burst of new resources queued up
# behind a handful of threads while the API server had capacity to spare.
WORKERS = 16


def jittered(delay: float) -> float:
    return delay * (1.0 + random.uniform(0.0, JITTER))


class ReconcileQueue:
    def __init__(
        self,
        reconcile: Callable[[str, str], Outcome],
        report_failure: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._reconcile = reconcile
        self._report_failure = report_failure
        self._workers = ThreadPoolExecutor(WORKERS, thread_name_prefix="reconcile")
        self._running: dict[Key, asyncio.Task[None]] = {}
        self._dirty: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._backoff_until: dict[Key, float] = {}
        self._deadlines: dict[Key, asyncio.TimerHandle] = {}
        self._started: dict[Key, float] = {}
        # Secret (namespace, name) -> the resources whose spec references it, from their
        # last reconcile: names only, never a Secret's content.
        self._by_secret: dict[Key, set[Key]] = {}
        self._secrets_of: dict[Key, frozenset[str]] = {}
        self.known: set[Key] = set()

    def request(self, key: Key) -> None:
        self.known.add(key)
        self._dirty.add(key)
        metrics.QUEUE.requested(key)
        until = self._backoff_until.get(key)
        if until is not None and until > self._now():
            self._schedule(key, until - self._now())  # no-op: the backoff deadline is pending
            return
        if key not in self._running:
            self._running[key] = asyncio.get_running_loop().create_task(self._run(key))

    def request_all(self, spread: float = 0.0) -> None:
        """Reconcile every known resource: now, or each at a random moment within ``spread``
        seconds (the resync), so that they do not all hit the API server at once."""
        for key in sorted(self.known):
            if spread > 0:
                self._schedule(key, random.uniform(0.0, spread))
            else:
                self.request(key)

    def secret_changed(self, namespace: str, name: str) -> None:
        """A Secret appeared, changed or went: reconcile the resources that reference it."""
        for key in sorted(self._by_secret.get((namespace, name), ())):
            self.request(key)

    def _index_secrets(self, key: Key, secrets: frozenset[str]) -> None:
        namespace = key[0]
        for name in self._secrets_of.pop(key, frozenset()) - secrets:
            users = self._by_secret[namespace, name]
            users.discard(key)
            if not users:
                del self._by_secret[namespace, name]
        for name in secrets:
            self._by_secret.setdefault((namespace, name), set()).add(key)
        if secrets:
            self._secrets_of[key] = secrets

    def running_longer_than(self, seconds: float) -> dict[Key, float]:
        """Reconciles that have run for more than ``seconds``, with how long: a stuck worker."""
        now = self._now()
        return {key: now - t for key, t in self._started.items() if now - t > seconds}

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _schedule(self, key: Key, delay: float) -> None:
        """Make sure ``key`` reconciles within ``delay``: keeps the earlier of two deadlines."""
        loop = asyncio.get_running_loop()
        pending = self._deadlines.get(key)
        if pending is not None and pending.when() <= loop.time() + delay:
            return
        if pending is not None:
            pending.cancel()

        def fire() -> None:
            del self._deadlines[key]
            self._backoff_until.pop(key, None)  # the deadline *is* the end of the backoff
            if key in self.known:
                self.request(key)

        self._deadlines[key] = loop.call_later(delay, fire)

    def _forget_deadline(self, key: Key) -> None:
        pending = self._deadlines.pop(key, None)
        if pending is not None:
            pending.cancel()

    async def _run(self, key: Key) -> None:
        try:
            await self._run_while_dirty(key)
        finally:  # nothing kept per resource once its reconciles are over
            if self._running.get(key) is asyncio.current_task():
                del self._running[key]

    async def _run_while_dirty(self, key: Key) -> None:
        while key in self._dirty and key not in self._backoff_until:
            self._dirty.discard(key)
            metrics.QUEUE.started(key)
            self._forget_deadline(key)
            self._started[key] = self._now()
            try:
                outcome = await asyncio.get_running_loop().run_in_executor(
                    self._workers, self._reconcile, *key
                )
            except Exception as error:
                await self._failed(key, error)
                continue
            finally:
                del self._started[key]
            self._failures.pop(key, None)
            self._index_secrets(key, outcome.secrets)
            if outcome.gone:
                # Forgotten unless an event came while it ran: a resource recreated under
                # the same name, whose ADDED event nothing would ever repeat.
                if key not in self._dirty:
                    self.known.discard(key)
                continue
            if outcome.writes:
                log.info("reconciled %s/%s: %s", *key, "; ".join(outcome.writes))
            else:  # one per resource: what a reconcile served from the watches leaves
                log.debug("reconciled %s/%s: nothing to write", *key)
            if outcome.retry_after is not None:
                metrics.RETRIES.labels(reason="requeue_after").inc()
                self._schedule(key, jittered(outcome.retry_after))
            if outcome.check_again_after is not None:
                self._schedule(key, jittered(outcome.check_again_after))

    async def _failed(self, key: Key, error: Exception) -> None:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        delay = jittered(min(2.0 ** (failures - 1), MAX_BACKOFF))
        log.error(
            "reconcile of %s/%s failed (%d in a row), retrying in %.1fs: %s",
            *key,
            failures,
            delay,
            error,
            exc_info=error,
        )
        self._backoff_until[key] = self._now() + delay
        metrics.RETRIES.labels(reason="error").inc()
        self._schedule(key, delay)
        if failures >= FAILURES_BEFORE_REPORT and self._report_failure is not None:
            detail = (
                str(error) if isinstance(error, KubeError) else f"{type(error).__name__}: {error}"
            )
            message = f"{failures} reconciles in a row failed, the last with: {detail}"
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._workers, self._report_failure, *key, message
                )
            except Exception as report_error:  # the API may be what fails; the retry goes on
                log.warning("could not report the failure on %s/%s: %s", *key, report_error)

    async def close(self) -> None:
        for key in list(self._deadlines):
            self._forget_deadline(key)
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.shutdown(wait=False)  # running reconciles finish; the caller waits
