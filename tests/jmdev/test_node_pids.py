"""Asking whether a node's process runs reaps no other child of the caller.

``os.waitpid(0, ...)`` waits for any child in the caller's process group: a node that asked
about a process it never started (pid 0: none recorded) reaped whichever child had just exited,
and that child's owner then read exit status 0 (Python's Popen on ECHILD), whatever it was.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from devkit.cluster import ControlPlane
from devkit.node import Node
from devkit.node.claim import claim_alive


def _until_exited_unreaped(pid: int) -> None:
    """Wait until ``pid`` is a zombie: exited, its status still waiting for its parent."""
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, f"{pid} did not exit"
        time.sleep(0.02)


def _forget_a_registry(tmp_path: Path) -> None:
    # It asks whether its containerd runs (to remove what was pulled): it has none.
    Node.for_plane(ControlPlane.create(tmp_path)).forget_registry("127.0.0.1:5000")


def _read_a_claim_without_pids(_: Path) -> None:
    assert not claim_alive({"workdir": "/nowhere", "pids": {"containerd": 0}})


@pytest.mark.parametrize("ask", [_forget_a_registry, _read_a_claim_without_pids])
def test_a_question_about_a_process_not_recorded_leaves_other_children_alone(
    ask: Callable[[Path], None], tmp_path: Path
) -> None:
    child = subprocess.Popen(["sh", "-c", "exit 3"])  # in the test's own process group
    _until_exited_unreaped(child.pid)
    ask(tmp_path)
    assert child.wait(timeout=30) == 3
