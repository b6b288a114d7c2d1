"""The bench's "CR -> Ready, one at a time" times CRs given to an operator that has finished
starting: with --short's 5 CRs its p95 is the slowest CR, and the first CR created right
after the operator's start also waited for the operator's first lists (3.1 s where the
others took 0.3 s). A just-started operator has a figure of its own."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.bench import one_at_a_time
from devkit.operator_process import OperatorProcess


def test_the_first_cr_is_created_once_the_operator_is_ready() -> None:
    happened: list[str] = []
    now = [0.0]

    def create(name: str) -> float:
        happened.append(f"create {name}")
        return now[0]

    def ready_at(name: str) -> float:
        happened.append(f"Ready {name}")
        now[0] += 0.25
        return now[0]

    latencies = one_at_a_time(
        lambda: happened.append("operator ready"), create, ready_at, ["a", "b"]
    )
    assert happened == ["operator ready", "create a", "Ready a", "create b", "Ready b"]
    assert latencies == [0.25, 0.25]


@pytest.fixture
def readyz() -> Iterator[tuple[int, list[int]]]:
    """A /readyz on a free port (yielded) that answers 503 twice (the list yielded), then 200."""
    answers: list[int] = [503, 503]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/readyz":
                self.send_response(404)
            else:
                self.send_response(answers.pop(0) if answers else 200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], answers
    finally:
        server.shutdown()
        server.server_close()


def test_ready_is_what_the_operators_readyz_answers(
    readyz: tuple[int, list[int]], tmp_path: Path
) -> None:
    port, answers = readyz
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    operator = OperatorProcess(process, tmp_path / "log", 0, port, "user")
    assert [operator.ready(), operator.ready()] == [False, False]  # 503: not listed yet
    assert operator.ready()
    assert answers == []
