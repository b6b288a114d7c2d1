"""The memory cgroup the benchmark runs the operator in (devkit.memory_cgroup): it holds a
process to its limit and counts the kernel's OOM kills, which the benchmark reports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devkit.memory_cgroup import MemoryCgroup, why_no_memory_cgroup

ALLOCATE = """
import os, sys
open(sys.argv[1], "w").write(str(os.getpid()))
chunks = [bytearray(1024 * 1024) for _ in range(int(sys.argv[2]))]
"""


@pytest.mark.skipif(why_no_memory_cgroup() is not None, reason=str(why_no_memory_cgroup()))
def test_a_process_over_the_limit_is_killed_and_counted() -> None:
    group = MemoryCgroup.create(limit_mib=64, prefix="jm-test")
    try:
        within = subprocess.run(
            [sys.executable, "-c", ALLOCATE, str(group.procs), "16"], timeout=60
        )
        assert within.returncode == 0 and group.oom_kills() == 0
        over = subprocess.run([sys.executable, "-c", ALLOCATE, str(group.procs), "256"], timeout=60)
        assert over.returncode == -9 and group.oom_kills() == 1
        assert group.peak_mib() <= 64.5
    finally:
        group.remove()
