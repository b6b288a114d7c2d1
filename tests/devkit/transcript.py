"""A transcript of commands as a user types them, each with its real output, in order:
what a walk-through test records for the reader (tests/e2e/test_user_first_hour.py).

Each command runs for real; the transcript shows it as typed (the program's name, not the
tool cache's path; the kubeconfig given through the environment, as a user's is) and then
exactly what it printed, stdout and stderr, and its exit status when not 0. Notes stand for
what a user does in an editor. The file is rewritten after every entry, so a failing run
leaves the transcript up to the step that failed.

    Transcript(path, env)
    .run(argv, shown=None, ...) -> CompletedProcess   # runs, records
    .note(text)                                        # comment lines
    .background(argv, shown, until) -> Popen           # started with `&`, its first lines
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class Transcript:
    def __init__(self, path: Path, env: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.env = {**os.environ, **(env or {})}
        self.entries: list[str] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    @property
    def text(self) -> str:
        return "\n".join(self.entries) + "\n"

    def _add(self, entry: str) -> None:
        self.entries.append(entry.rstrip("\n"))
        self.path.write_text(self.text)

    def note(self, text: str) -> None:
        self._add("\n".join(f"# {line}".rstrip() for line in text.splitlines()))

    def run(
        self,
        argv: Sequence[str | Path],
        shown: str | None = None,
        *,
        cwd: Path | None = None,
        check: bool = True,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv``; record ``$ <shown>`` (default: ``argv`` with the program's bare
        name) and the output. ``check``: a non-zero exit fails with the output."""
        command = [str(part) for part in argv]
        typed = shown or shlex.join([Path(command[0]).name, *command[1:]])
        result = subprocess.run(
            command, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        output = result.stdout + result.stderr
        status = f"(exit status {result.returncode})" if result.returncode else ""
        self._add("\n".join(part for part in (f"$ {typed}", output.rstrip("\n"), status) if part))
        if check and result.returncode:
            raise AssertionError(f"{typed} exited {result.returncode}:\n{output[-4000:]}")
        return result

    def background(
        self, argv: Sequence[str | Path], shown: str, until: str, timeout: float = 60
    ) -> subprocess.Popen[str]:
        """Start ``argv`` as ``<shown> &`` and record what it prints up to the first line
        holding ``until`` (e.g. a port-forward's "Forwarding from"); the caller stops it."""
        process = subprocess.Popen(
            [str(part) for part in argv],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if until in line:
                self._add("\n".join([f"$ {shown} &", *lines]))
                return process
        process.kill()
        process.wait(timeout=30)
        raise AssertionError(f"{shown}: no {until!r} within {timeout:.0f}s: {lines}")
