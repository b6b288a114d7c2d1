"""Ports for the processes the devkit launches, and their start again when a port was lost.

A port is chosen free here and bound a moment later by another process (etcd, kube-apiserver,
kubelet, Prometheus, PostgreSQL, gunicorn, the operator...). In between anything may bind it:
another pytest-xdist worker's launcher, a pod's port, any program of the machine. Choosing
outside the kernel's ephemeral range keeps outgoing connections off it, but not other
explicit binds, so no choice can be safe. Every launcher therefore starts through
``start_on_free_ports``: when its process exits during the start and its output says it lost
a bind ("address already in use", in each program's words), the launcher chooses fresh ports
and starts again, a few times, instead of failing the run.

Public API::

    free_port(candidates=None) -> int        # a loopback port nobody listens on right now
    refusing_port() -> int                   # context manager: a port that refuses, held
    PortTaken                                # a start that lost the bind of one of its ports
    StartOutput(log)                         # what a process wrote since this start
    lost_bind(output) -> bool                # ``output`` says a bind failed: port taken
    exited_during_start(what, output, error) # PortTaken when ``output`` says bind lost
    start_on_free_ports(start, repick)       # start; on PortTaken, repick ports and again
                                             # (RuntimeError after START_ATTEMPTS losses)
    start_on_fresh_ports(start, count)       # the same, for ports that live in the start only
"""

from __future__ import annotations

import logging
import random
import re
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Ports below this are left to well-known system services.
LOWEST_CHOSEN_PORT = 10000
# How often a launcher starts again after losing a port. Each loss needs another process to
# bind, in the few milliseconds between the choice and the bind, one of ~50,000 ports.
START_ATTEMPTS = 5
# How the programs we launch say that a bind failed because the port is taken: Go's net
# package ("bind: address already in use"), strerror(EADDRINUSE) in C (PostgreSQL, Redis,
# nginx: "Address already in use"), Python's OSError, gunicorn, which logs only
# "Connection in use" at its default level, and Django's runserver ("That port is already in
# use.").
BIND_LOST = re.compile(
    r"address already in use|connection in use|port is already in use", re.IGNORECASE
)

Started = TypeVar("Started")


def ephemeral_port_range(source: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux default 32768-60999)."""
    try:
        low, high = source.read_text().split()
    except (OSError, ValueError):
        return 32768, 60999
    return int(low), int(high)


def ports_outside(ephemeral: tuple[int, int]) -> list[range]:
    """The ports from LOWEST_CHOSEN_PORT up that the kernel never picks for a client socket."""
    low, high = ephemeral
    candidates = [range(LOWEST_CHOSEN_PORT, low), range(high + 1, 65536)]
    return [ports for ports in candidates if ports]


def free_port(candidates: list[range] | None = None) -> int:
    """A loopback TCP port nobody listens on right now, outside the ephemeral range.

    Inside the ephemeral range the kernel may hand the port to any outgoing connection (the
    components' own clients included) before its process binds it; outside, only another
    explicit bind can take it, and the launchers start again when one did.
    """
    if candidates is None:
        candidates = ports_outside(ephemeral_port_range())
    if candidates:
        for _ in range(100):
            port = random.choice(random.choice(candidates))
            if _bindable(port):
                return port
    # Every port is ephemeral, or every try was taken: any free port is the best left.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextmanager
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses every connection while the block runs: a dead address
    (a database that is down, a target nothing serves). A port found free would not do:
    any process may bind it meanwhile and answer, or accept and never answer. This one is
    bound and never listens, so connecting gets "connection refused" and nobody else can
    bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


class PortTaken(RuntimeError):
    """A process exited during its start because another process had bound its port."""

    def __init__(self, what: str, output: str) -> None:
        super().__init__(f"{what} lost the bind of its port during start:\n{output}")
        self.what = what


@dataclass
class StartOutput:
    """The output a process wrote to ``log`` since this start: a launcher appends the runs of
    one component to one log, and only this run's words tell why this run exited."""

    log: Path
    offset: int = field(init=False)

    def __post_init__(self) -> None:
        self.offset = self.log.stat().st_size if self.log.exists() else 0

    def text(self) -> str:
        try:
            with self.log.open("rb") as handle:
                handle.seek(self.offset)
                return handle.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-lines:]) or "(no output)"


def lost_bind(output: str) -> bool:
    """Whether a process's ``output`` says that a bind failed because the port was taken."""
    return bool(BIND_LOST.search(output))


def exited_during_start(what: str, output: str, error: type[Exception] = RuntimeError) -> Exception:
    """The exception for ``what`` exiting during its start after writing ``output``:
    PortTaken when it says it lost a bind, else ``error`` with the output's tail."""
    tail = "\n".join(output.splitlines()[-30:])
    if lost_bind(output):
        return PortTaken(what, tail)
    return error(f"{what} exited during start:\n{tail}")


def start_on_free_ports(
    start: Callable[[], Started],
    repick: Callable[[PortTaken], None],
    attempts: int = START_ATTEMPTS,
) -> Started:
    """``start()``; when it raises PortTaken, ``repick(error)`` chooses fresh ports for what
    lost its bind (its process has exited), then ``start()`` again. Each process (by its
    PortTaken's ``what``) may lose its ports ``attempts - 1`` times; at the next loss a
    RuntimeError says so, with what its last start wrote."""
    losses: Counter[str] = Counter()
    while True:
        try:
            return start()
        except PortTaken as error:
            losses[error.what] += 1
            if losses[error.what] >= attempts:
                raise RuntimeError(
                    f"{error.what} lost its port to another process at each of its {attempts}"
                    " starts, on fresh ports each time: something on this machine binds the"
                    " ports the devkit chooses as fast as it chooses them (see `ss -ltnp`)."
                    f" Its last start: {error}"
                ) from error
            log.warning("%s lost a port to another process; starting it on fresh ports", error.what)
            repick(error)


def start_on_fresh_ports(
    start: Callable[[list[int]], Started],
    count: int = 1,
    choose: Callable[[], int] = free_port,
    attempts: int = START_ATTEMPTS,
) -> Started:
    """``start(ports)`` on ``count`` ports from ``choose``, again on fresh ones while it
    raises PortTaken: for a launcher whose ports live only in its start."""
    chosen = [choose() for _ in range(count)]

    def repick(_: PortTaken) -> None:
        chosen[:] = [choose() for _ in range(count)]

    return start_on_free_ports(lambda: start(list(chosen)), repick, attempts)
