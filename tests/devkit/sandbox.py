"""A sandbox for running `jm-dev` as a user would, in which every trace it leaves is found."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from devkit.toolchain import cache_dir

CONTROL_PLANE_TOOLS = ("kube-apiserver", "kube-controller-manager", "helm")


class JmDevSandbox:
    """Environment for a `jm-dev` subprocess whose every trace can be found afterwards.

    TMPDIR and JM_CACHE_DIR point into the test's directory, so the command's work dirs land
    there and `jm-dev cluster up` keeps its state there instead of the machine's. Only the
    control plane's tools are linked into that cache: without the node's, `cluster up` adds
    no node (one per host, tested in tests/node). Every process the command starts inherits
    this environment, so one left behind shows it in /proc/PID/environ.
    """

    def __init__(self, root: Path) -> None:
        self.tmp = root / "tmp"
        self.cache = root / "cache"
        self.tmp.mkdir()
        self.cache.mkdir()
        (self.cache / "crds").symlink_to(cache_dir() / "crds")
        (self.cache / "bin").mkdir()
        for tool in CONTROL_PLANE_TOOLS:
            (self.cache / "bin" / tool).symlink_to(cache_dir() / "bin" / tool)
        environment = {**os.environ, "TMPDIR": str(self.tmp), "JM_CACHE_DIR": str(self.cache)}
        environment.pop("KUBECONFIG", None)
        self.env = {**environment, "PYTHONUNBUFFERED": "1"}

    @staticmethod
    def command(*arguments: str) -> list[str]:
        return [sys.executable, "-m", "devkit.cli", *arguments]

    def processes(self) -> list[str]:
        """Live processes carrying this sandbox's environment, as "pid command line"."""
        return [f"{pid} {command}" for pid, command in self._processes()]

    def kill_leftovers(self) -> None:
        """SIGKILL what the command left behind, so that a failing test leaks nothing."""
        for pid, _ in self._processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _processes(self) -> list[tuple[int, str]]:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes()
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:  # gone meanwhile, or a kernel thread
                continue
            if f"TMPDIR={self.tmp}".encode() in environ.split(b"\0"):
                found.append((int(entry.name), command))
        return found

    def files_left(self) -> list[str]:
        """Work dirs and state the command left: anything in TMPDIR or the cache but tools."""
        left = [str(path) for path in self.tmp.iterdir()]
        left += [str(path) for path in self.cache.iterdir() if path.name not in ("bin", "crds")]
        return left
