"""Stop signals become Stopped in the main thread, and never cut a shielded cleanup short."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

SCRIPT = """
import os, signal, sys, time
from devkit.stopping import Stopped, shielded, stop_on_signals

steps = []
try:
    with stop_on_signals():
        try:
            steps.append("working")
            os.kill(os.getpid(), signal.{first})
            time.sleep(5)
            steps.append("not stopped")
        finally:
            with shielded():
                os.kill(os.getpid(), signal.{second})  # arrives during the cleanup
                time.sleep(0.2)
                steps.append("cleaned up")
except Stopped as stop:
    print(steps, stop.signum == signal.{first})
"""


@pytest.mark.parametrize(
    ("first", "second"), [("SIGTERM", "SIGHUP"), ("SIGHUP", "SIGTERM"), ("SIGINT", "SIGTERM")]
)
def test_a_stop_signal_raises_stopped_and_a_second_waits_for_the_cleanup(
    first: str, second: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(first=first, second=second)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['working', 'cleaned up'] True"
    assert f"{second}: cleaning up first" in result.stderr


def test_a_signal_during_a_shielded_cleanup_stops_the_command_once_it_is_done() -> None:
    script = """
import os, signal, time
from devkit.stopping import Stopped, shielded, stop_on_signals

steps = []
try:
    with stop_on_signals(), shielded():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        steps.append("cleaned up")
    steps.append("went on")
except Stopped as stop:
    print(steps, stop.signum == signal.SIGTERM)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "['cleaned up'] True", result.stderr


@pytest.mark.parametrize("inherited_sigint", ["default", "ignored"])
def test_the_handlers_that_were_there_before_come_back_after_a_command(
    inherited_sigint: str,
) -> None:
    """A test that runs ``cli.main`` in-process keeps pytest's own Ctrl-C afterwards, and a
    process started with SIGINT ignored (a background job of a shell, as CI and nohup'd
    runs start them) keeps it ignored: whatever each stop signal's handler was, it is back.
    """
    script = """
import signal
from devkit.stopping import STOP_SIGNALS, stop_on_signals

def mine(signum, frame):
    pass

signal.signal(signal.SIGTERM, mine)
before = {each: signal.getsignal(each) for each in STOP_SIGNALS}
with stop_on_signals():
    inside = {each: signal.getsignal(each) for each in STOP_SIGNALS}
after = {each: signal.getsignal(each) for each in STOP_SIGNALS}
print(
    all(inside[each] is not before[each] for each in STOP_SIGNALS),
    all(after[each] is before[each] for each in STOP_SIGNALS),
    before[signal.SIGINT] is signal.SIG_IGN,
)
"""
    disposition = signal.SIG_IGN if inherited_sigint == "ignored" else signal.SIG_DFL
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        # What the shell does to a background job, whatever the test process inherited.
        preexec_fn=lambda: signal.signal(signal.SIGINT, disposition),
    )
    assert result.stdout.strip() == f"True True {inherited_sigint == 'ignored'}", result.stderr
