"""Stop signals for jm-dev: SIGTERM and SIGHUP end a command the way Ctrl-C (SIGINT) does.

`timeout`, CI cancellation and a closed terminal send SIGTERM or SIGHUP, and Python's default
for those is to die at once, skipping the `finally` blocks that stop etcd, kube-apiserver, the
controller manager and the operator (they run in sessions of their own, so no terminal signal
reaches them). Here the first stop signal raises Stopped in the main thread, so every
`finally` runs. A signal that arrives while a cleanup runs under ``shielded()`` waits until it
has finished, and signals after the first are only noted: neither can cut a cleanup short
(each is bounded: its processes get SIGKILL after 10 s).
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """A stop signal, raised in the main thread so that every `finally` cleans up."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _State:
    stopping = False  # Stopped was raised: later signals are only noted
    shielded = 0  # depth of cleanups running under shielded()
    pending: int | None = None  # the signal that arrived during a shielded cleanup


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if _State.stopping or _State.shielded:
        _State.pending = _State.pending or signum
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            print(f"jm-dev: {signal.Signals(signum).name}: cleaning up first", file=sys.stderr)
        return
    _State.stopping = True
    raise Stopped(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Stop signals raise Stopped while the block runs; the handlers that were there before
    come back after it, so a caller that runs a command in-process (a test calling
    ``cli.main``) keeps its own Ctrl-C."""
    before = {each: signal.getsignal(each) for each in STOP_SIGNALS}
    _State.stopping, _State.pending = False, None
    for each in STOP_SIGNALS:
        signal.signal(each, _on_signal)
    try:
        yield
    finally:
        for each, handler in before.items():
            signal.signal(each, handler)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Run a cleanup to its end; a stop signal that came meanwhile is raised after it."""
    _State.shielded += 1
    try:
        yield
    finally:
        _State.shielded -= 1
    if _State.pending is not None and not _State.shielded and not _State.stopping:
        _State.stopping = True
        raise Stopped(_State.pending)
