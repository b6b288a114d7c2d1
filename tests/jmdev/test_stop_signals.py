"""`jm-dev demo`, `cluster up` and `bench` clean up on SIGTERM and SIGHUP as on Ctrl-C.

`timeout`, CI cancellation and a closed terminal end a command with SIGTERM or SIGHUP. Before,
Python died at once on those and left etcd, kube-apiserver, kube-controller-manager, the
operator and the /tmp/jm-* work dirs behind (issue 9). Each command here is stopped while
its control plane runs, and afterwards no process of it and none of its files are left.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable

import pytest

from devkit.operator_process import OPERATOR_LAUNCHER
from devkit.sandbox import JmDevSandbox

# How to tell that a command is in the middle of its work, with its processes running.
Moment = Callable[[JmDevSandbox, str], bool]


def _demo_left_running(sandbox: JmDevSandbox, output: str) -> bool:
    return "left running" in output


def _apiserver_starting(sandbox: JmDevSandbox, output: str) -> bool:
    return any("kube-apiserver" in process for process in sandbox.processes())


def _operator_running(sandbox: JmDevSandbox, output: str) -> bool:
    """The bench runs the operator as its image does, through devkit's launcher."""
    return any(OPERATOR_LAUNCHER in process for process in sandbox.processes())


COMMANDS: dict[str, tuple[list[str], Moment]] = {
    "demo --keep": (["demo", "--keep"], _demo_left_running),
    "cluster up": (["cluster", "up"], _apiserver_starting),
    "bench": (["bench", "--short"], _operator_running),
}


@pytest.mark.cluster
@pytest.mark.timeout(900)
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_stop_signal_leaves_nothing_behind(
    sandbox: JmDevSandbox, name: str, stop: signal.Signals
) -> None:
    arguments, moment = COMMANDS[name]
    output_file = sandbox.tmp.parent / "output.txt"
    with output_file.open("w") as output:
        command = subprocess.Popen(
            sandbox.command(*arguments), stdout=output, stderr=subprocess.STDOUT, env=sandbox.env
        )
    try:
        deadline = time.monotonic() + 600
        while not moment(sandbox, output_file.read_text()):
            assert command.poll() is None, f"{name} ended early:\n{output_file.read_text()}"
            assert time.monotonic() < deadline, (
                f"{name} never got there:\n{output_file.read_text()}"
            )
            time.sleep(0.2)
        command.send_signal(stop)
        code = command.wait(timeout=120)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    output = output_file.read_text()
    assert code == 128 + stop, output
    assert f"stopped by {stop.name}" in output
    # Give the kernel a moment to reap what was killed before looking.
    deadline = time.monotonic() + 10
    while sandbox.processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sandbox.processes() == [], output
    assert sandbox.files_left() == [], output
