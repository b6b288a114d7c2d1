"""A cgroup v1 memory controller group for one process tree: the memory limit a pod's
container gets, applied to the operator on this machine (issue 19: the chart's limit is
tested). Created under /sys/fs/cgroup/memory, removed when done."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

MEMORY_ROOT = Path("/sys/fs/cgroup/memory")


def why_no_memory_cgroup() -> str | None:
    """None when a group can be made here, else why not."""
    if not (MEMORY_ROOT / "memory.limit_in_bytes").exists():
        return f"no cgroup v1 memory controller at {MEMORY_ROOT}"
    probe = MEMORY_ROOT / f"jm-probe-{uuid.uuid4().hex[:8]}"
    try:
        probe.mkdir()
    except OSError as error:
        return f"cannot create a memory cgroup: {error}"
    probe.rmdir()
    return None


@dataclass
class MemoryCgroup:
    """A memory cgroup limited to ``limit_mib`` (swap included: as a container's limit)."""

    path: Path

    @classmethod
    def create(cls, limit_mib: float, prefix: str = "jm") -> MemoryCgroup:
        path = MEMORY_ROOT / f"{prefix}-{uuid.uuid4().hex[:8]}"
        path.mkdir()
        group = cls(path)
        limit = str(int(limit_mib * 1024 * 1024))
        (path / "memory.limit_in_bytes").write_text(limit)
        swap = path / "memory.memsw.limit_in_bytes"
        if swap.exists():  # without swap accounting the limit is on memory alone
            swap.write_text(limit)
        return group

    @property
    def procs(self) -> Path:
        return self.path / "cgroup.procs"

    def oom_kills(self) -> int:
        """How many processes the kernel killed for exceeding the limit."""
        for line in (self.path / "memory.oom_control").read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
        return 0

    def peak_mib(self) -> float:
        return int((self.path / "memory.max_usage_in_bytes").read_text()) / 1024 / 1024

    def remove(self) -> None:
        """Once its processes have exited."""
        if self.path.exists():
            self.path.rmdir()
