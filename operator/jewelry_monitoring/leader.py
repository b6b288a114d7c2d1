"""Leader election with a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Only the replica holding the Lease may write: its work queue, resync and retry timers run
only while it leads (``on_started``/``on_stopped``), and its client asks ``may_write`` before
every write, so even a reconcile still running when the lease is lost cannot write.

Timing, with client-go's meaning and defaults (15 s / 10 s / 2 s):

- a candidate takes the Lease when its holder has not renewed it for ``lease_duration``,
  measured on the candidate's own clock from when it *saw* the record change (clocks of
  different machines are never compared);
- the leader renews every ``retry_period``; when it has not renewed for ``renew_deadline``
  it stops writing at once. ``renew_deadline < lease_duration``, so it has stopped before
  anyone else can take over;
- on a graceful stop the leader drains its work, stops writing, waits until the writes that
  passed its fence are answered (renewing the Lease all along), and releases the Lease
  (empty holder), so a standby takes over within one ``retry_period`` instead of a whole
  ``lease_duration``, and never while one of the old leader's writes is still on its way.

Every request has a timeout and every loop waits ``retry_period`` (with jitter) between
attempts: no unbounded request loop, whatever the API server does. As with client-go, one
renewal may take until the renew deadline (a loaded API server answers in seconds); a
renewal answered later would be of no use, the fence being closed by then. The leader
renews with one request, an update of the Lease as it last wrote it (client-go's fast
path), and reads it only when that update conflicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from jewelry_monitoring import metrics
from jewelry_monitoring.config import LeaseSettings
from jewelry_monitoring.kube import REQUEST_TIMEOUT, Kube, KubeError

log = logging.getLogger(__name__)
Obj = dict[str, Any]
JITTER = 0.2


def _time_left(deadline: float) -> tuple[float, float]:
    """(connect, read) timeouts of a request that must be answered by ``deadline``
    (``time.monotonic``)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("no time left before the renew deadline")
    return min(REQUEST_TIMEOUT[0], left), left


def _micro_time(now: datetime.datetime) -> str:
    """metav1.MicroTime, as the API server stores renewTime/acquireTime."""
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claimed_spec(current: Obj, identity: str, lease_duration: float, now: str) -> Obj:
    """The Lease spec after ``identity`` creates (``current`` empty), renews or takes it."""
    renewing = current.get("holderIdentity") == identity
    transitions = int(current.get("leaseTransitions") or 0)
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, round(lease_duration)),
        "acquireTime": current.get("acquireTime") if renewing else now,
        "renewTime": now,
        "leaseTransitions": transitions if renewing or not current else transitions + 1,
    }


def released_spec(current: Obj, now: str) -> Obj:
    """The Lease spec a leader leaves behind on a graceful stop: no holder, expires at once."""
    return {
        "holderIdentity": "",
        "leaseDurationSeconds": 1,
        "acquireTime": now,
        "renewTime": now,
        "leaseTransitions": int(current.get("leaseTransitions") or 0),
    }


class LeaderElector:
    """Campaigns for the Lease, leads while it holds it, and hands it back on stop."""

    def __init__(
        self,
        kube: Kube,
        settings: LeaseSettings,
    ) -> None:
        self._kube = kube
        self.settings = settings
        # One thread of its own: reconciles blocked in the default pool never delay a renewal.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        self._observed: Obj | None = None  # the Lease spec as last seen
        self._written: Obj | None = None  # the Lease as our last successful claim left it
        self._observed_at = 0.0  # monotonic time it was first seen like that
        self._renewed_at: float | None = None  # monotonic time before our last successful claim
        self._handing_back = False  # stopped writing for good; the Lease is still renewed
        self._stopping = asyncio.Event()

    def may_write(self) -> float:
        """How many seconds a write sent now may take to land; 0 unless this replica holds
        the Lease now (by its own clock) and is not handing it back. Thread-safe.

        A standby may take the Lease a lease duration after it saw our last renewal, and a
        write sent just before the fence closed (the renew deadline) could land after that
        under load: each write must land by halfway between the renew deadline and the
        lease duration after our last renewal, or not at all (the API server drops it)."""
        renewed = self._renewed_at
        if renewed is None or self._handing_back or not self._holds():
            return 0.0
        settings = self.settings
        midway = (settings.renew_deadline + settings.lease_duration) / 2
        return renewed + midway - time.monotonic()

    def _holds(self) -> bool:
        renewed = self._renewed_at
        return renewed is not None and time.monotonic() < renewed + self.settings.renew_deadline

    async def run(
        self,
        on_started: Callable[[], Awaitable[None]],
        on_stopped: Callable[[], Awaitable[None]],
        writes_settled: Callable[[float], bool],
    ) -> None:
        """Campaign, lead, and campaign again after losing the Lease, until ``stop``.

        ``on_started`` starts the work that only a leader does; ``on_stopped`` stops and drains
        it (it runs before the Lease is released); ``writes_settled(timeout)`` waits until the
        writes that passed ``may_write`` have been answered (``Kube.writes_settled``)."""
        try:
            while not self._stopping.is_set():
                if not await self._campaign():
                    break
                log.info("%s acquired lease %s", self.settings.identity, self._lease_name)
                metrics.LEADER.set(1)
                await self._lead(on_started)
                if self._stopping.is_set():
                    await self._renewing_while(on_stopped())
                    continue  # to the hand-back
                metrics.LEADER.set(0)
                await on_stopped()
                log.warning("%s lost lease %s", self.settings.identity, self._lease_name)
            if self._renewed_at is not None:
                await self._hand_back(writes_settled)
        finally:
            self._renewed_at = None
            metrics.LEADER.set(0)
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _hand_back(self, writes_settled: Callable[[float], bool]) -> None:
        """Stop writing, wait for the writes already sent (still renewing the Lease: under
        load the API server may take longer than a lease duration to answer one), then
        release the Lease: the next leader's first write (taking the Lease) comes after our
        last. A write unanswered after its own timeout has failed here but may still be
        applied there, so then the Lease is left to expire instead."""
        self._handing_back = True
        metrics.LEADER.set(0)
        bound = sum(REQUEST_TIMEOUT)
        settling = asyncio.ensure_future(asyncio.to_thread(writes_settled, bound))
        await self._renewing_while(settling)
        self._renewed_at = None
        if settling.result():
            await self._attempt(self._release)
        else:
            log.warning(
                "writes still unanswered %.0fs after stopping: leaving lease %s to expire",
                bound,
                self._lease_name,
            )

    def stop(self) -> None:
        """Ask ``run`` to stop leading (draining through ``on_stopped``) and release the Lease."""
        self._stopping.set()

    @property
    def _lease_name(self) -> str:
        return f"{self.settings.namespace}/{self.settings.name}"

    async def _campaign(self) -> bool:
        """Try every retry period until the Lease is ours (True) or we are stopped (False)."""
        while not self._stopping.is_set():
            if await self._attempt(self._try_claim):
                return True
            await self._pause()
        return False

    async def _lead(self, on_started: Callable[[], Awaitable[None]]) -> None:
        """Start the leader's work (``on_started``, which may wait a while for the first
        lists) and renew every retry period, from the start on; return when stopped or when
        the Lease is lost, cancelling the start if it still runs."""
        starting = asyncio.ensure_future(on_started())
        try:
            while not self._stopping.is_set():
                await self._pause()
                if starting.done():
                    starting.result()  # a start that failed fails the election
                if self._stopping.is_set():
                    return
                claimed = await self._attempt(self._try_claim)
                if not claimed and self._observed and self._held_by_other(self._observed):
                    self._renewed_at = None  # someone else holds it: stop writing now
                if not self.may_write():
                    return
        finally:
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting

    async def _renewing_while(self, stopping: Awaitable[Any]) -> None:
        """Keep renewing the Lease until ``stopping`` (the drain, then the wait for the writes
        sent) is done: the old leader's writes land only while the Lease is ours, and nobody
        can take it over (by expiry) meanwhile. A renewal that fails is not retried here: the
        fence then closes by itself after the renew deadline."""
        step = asyncio.ensure_future(stopping)
        while not step.done():
            await asyncio.wait({step}, timeout=self.settings.retry_period)
            if not step.done() and self._holds():
                await self._attempt(self._try_claim)
        await step

    async def _pause(self) -> None:
        period = self.settings.retry_period * (1 + random.uniform(0, JITTER))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=period)

    async def _attempt(self, step: Callable[[float], bool]) -> bool:
        """Run one step in the lease thread, its requests bounded by one deadline (which it is
        given, as a ``time.monotonic`` time): while this replica holds the Lease, when its
        fence would close; else a renew deadline from now. Any failure is a failed
        attempt."""
        loop = asyncio.get_running_loop()
        bound = self.settings.renew_deadline
        renewed = self._renewed_at
        if renewed is not None and self._holds():
            bound = renewed + self.settings.renew_deadline - time.monotonic()
        deadline = time.monotonic() + bound
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._executor, step, deadline), timeout=bound
            )
        except (KubeError, TimeoutError, OSError) as error:
            log.warning("lease %s: %s", self._lease_name, error)
        except Exception:  # the client library raises its own (urllib3) errors
            log.exception("lease %s: unexpected error", self._lease_name)
        return False

    def _held_by_other(self, spec: Obj) -> bool:
        holder = spec.get("holderIdentity") or ""
        return bool(holder) and holder != self.settings.identity

    def _try_claim(self, deadline: float) -> bool:
        """One acquire-or-renew, every request done by ``deadline``: while we hold the Lease,
        an update of it as we last wrote it; else (or when that conflicts) GET, then create
        or update (resourceVersion-guarded). The Lease counts as renewed when the write that
        succeeded was sent: a standby's clock starts only once it sees that write."""
        now = _micro_time(datetime.datetime.now(datetime.UTC))
        settings = self.settings
        if self._written is not None and self._holds():
            spec = claimed_spec(
                self._written["spec"], settings.identity, settings.lease_duration, now
            )
            if self._write(self._kube.replace, {**self._written, "spec": spec}, deadline):
                return True
            self._written = None  # someone else wrote it since: read it
        read_at = time.monotonic()
        lease = self._kube.get(
            "Lease", settings.namespace, settings.name, timeout=_time_left(deadline)
        )
        if lease is None:
            spec = claimed_spec({}, settings.identity, settings.lease_duration, now)
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": settings.name, "namespace": settings.namespace},
                "spec": spec,
            }
            return self._write(self._kube.create, lease, deadline)
        current = lease.get("spec") or {}
        if current != self._observed:
            self._observe(current, read_at)
        duration = float(current.get("leaseDurationSeconds") or settings.lease_duration)
        if self._held_by_other(current) and read_at < self._observed_at + duration:
            return False
        spec = claimed_spec(current, settings.identity, settings.lease_duration, now)
        return self._write(self._kube.replace, {**lease, "spec": spec}, deadline)

    def _write(
        self,
        write: Callable[[Obj, tuple[float, float]], Obj],
        lease: Obj,
        deadline: float,
    ) -> bool:
        """Create or update the Lease as ours; False if someone else wrote it first (409)."""
        timeout = _time_left(deadline)
        sent = time.monotonic()
        try:
            written = write(lease, timeout)
        except KubeError as error:
            if error.status == 409:
                return False
            raise
        self._written = written
        self._observe(written.get("spec") or {}, sent)
        self._renewed_at = sent
        return True

    def _release(self, deadline: float) -> bool:
        """Hand the Lease back if it is still ours."""
        settings = self.settings
        lease = self._kube.get(
            "Lease", settings.namespace, settings.name, timeout=_time_left(deadline)
        )
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != settings.identity:
            return False
        now = _micro_time(datetime.datetime.now(datetime.UTC))
        self._kube.replace(
            {**lease, "spec": released_spec(lease["spec"], now)}, timeout=_time_left(deadline)
        )
        self._written = None
        log.info("%s released lease %s", settings.identity, self._lease_name)
        return True

    def _observe(self, spec: Obj, at: float) -> None:
        self._observed = spec
        self._observed_at = at
