"""`jm-dev demo` in pods cleans up on a stop signal as on Ctrl-C (issue 8 part 3).

The demo is stopped while its control plane and node run and it loads images (the long
first-time part a user interrupts), then nothing of it may stay: no process, no work dir, no
node claim, and the host as before (routes, rules, mounts, cgroups...: devkit.node's
footprint). It runs before any other test here starts the session's node: one node per host.
The whole demo, to the end, is what CI runs first (README).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devkit.node import HOST_CLAIM, host_footprint, why_no_node

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

# Printed once the plane and the node run and the images are being loaded onto the node.
LOADING = "  loading 1/"


def _processes_with(tmpdir: Path) -> list[str]:
    """Live processes started with TMPDIR=tmpdir: everything the demo started."""
    marker = f"TMPDIR={tmpdir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def test_sigterm_during_the_pods_demo_leaves_nothing_behind(tmp_path: Path) -> None:
    """SIGTERM (CI cancelling, `timeout`): SIGINT and SIGHUP take the same path through
    devkit.stopping, tested for every command in tests/jmdev/test_stop_signals.py."""
    stop = signal.SIGTERM
    reason = why_no_node()
    if reason:
        pytest.fail(f"the demo in pods needs a node on this host: {reason}")
    before = host_footprint()
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}
    env.pop("KUBECONFIG", None)
    output = tmp_path / "output.txt"
    with output.open("w") as sink:
        demo = subprocess.Popen(
            [sys.executable, "-m", "devkit.cli", "demo"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 600
        while LOADING not in output.read_text():
            assert demo.poll() is None, f"the demo ended early:\n{output.read_text()}"
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.5)
        demo.send_signal(stop)
        assert demo.wait(timeout=300) == 128 + stop, output.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    assert "cleaned up" in output.read_text()
    assert not _processes_with(tmpdir)
    assert not list(tmpdir.iterdir()), "the demo's work dir stayed"
    assert not HOST_CLAIM.exists()
    after = host_footprint()
    changed = {
        aspect: sorted(set(after[aspect]) ^ set(before[aspect]))
        for aspect in before
        if set(after[aspect]) != set(before[aspect])
    }
    assert not changed, changed
