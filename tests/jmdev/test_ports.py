"""The control plane's port chooser keeps out of the kernel's ephemeral range.

A port chosen free and bound a moment later by etcd or kube-apiserver could meanwhile be taken
as the local port of some outgoing connection if it lay in that range (issue 9: "bind: address
already in use" on 127.0.0.1:32981). A dead address (a database that is down) is a port held
by the test, which no other process can take and answer on.
"""

from __future__ import annotations

import errno
import socket

import pytest

from devkit import services
from devkit.ports import (
    LOWEST_CHOSEN_PORT,
    START_ATTEMPTS,
    PortTaken,
    ephemeral_port_range,
    free_port,
    ports_outside,
    refusing_port,
    start_on_free_ports,
)


def test_chosen_ports_lie_outside_the_kernels_ephemeral_range() -> None:
    low, high = ephemeral_port_range()
    chosen = {free_port() for _ in range(200)}
    inside = sorted(port for port in chosen if low <= port <= high or port < LOWEST_CHOSEN_PORT)
    assert not inside, f"ports inside the ephemeral range {low}-{high}: {inside}"


def test_the_ranges_outside_follow_the_kernels_setting() -> None:
    assert ports_outside((32768, 60999)) == [
        range(LOWEST_CHOSEN_PORT, 32768),
        range(61000, 65536),
    ]
    assert ports_outside((LOWEST_CHOSEN_PORT, 65535)) == []


def test_a_port_someone_listens_on_is_never_chosen() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # The only candidate is taken: the chooser falls back to another free port.
        assert {free_port([range(port, port + 1)]) for _ in range(20)} & {port} == set()


def test_a_machine_whose_every_port_is_ephemeral_still_gets_a_free_port() -> None:
    port = free_port([])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_the_services_port_chooser_keeps_out_of_the_ephemeral_range_too() -> None:
    """PostgreSQL, Redis, nginx and Prometheus in the tests bind their ports a moment later too."""
    low, high = ephemeral_port_range()
    chosen = {services.free_port() for _ in range(200)}
    assert not [port for port in chosen if low <= port <= high]


def test_a_refusing_port_refuses_and_nobody_else_can_take_it() -> None:
    with refusing_port() as port:
        with socket.socket() as client:
            assert client.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
        for address in ("127.0.0.1", "0.0.0.0"):
            with socket.socket() as other, pytest.raises(OSError) as lost:
                # As servers bind (gunicorn, Python's http.server, Go's net package).
                other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                other.bind((address, port))
            assert lost.value.errno == errno.EADDRINUSE


def test_a_start_that_keeps_losing_its_ports_gives_up_and_says_why() -> None:
    starts: list[int] = []
    repicks: list[str] = []

    def start() -> None:
        starts.append(len(starts))
        raise PortTaken("etcd", "listen tcp 127.0.0.1:62094: bind: address already in use")

    with pytest.raises(RuntimeError) as gave_up:
        start_on_free_ports(start, lambda error: repicks.append(error.what))
    assert len(starts) == START_ATTEMPTS
    assert repicks == ["etcd"] * (START_ATTEMPTS - 1)
    message = str(gave_up.value)
    assert (
        f"etcd lost its port to another process at each of its {START_ATTEMPTS} starts" in message
    )
    assert "bind: address already in use" in message  # what the last start said
