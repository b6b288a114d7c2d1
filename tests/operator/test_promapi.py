"""What the operator's Prometheus client makes of answers that are not a Prometheus API:
each is a PrometheusError (TargetsHealthy=Unknown/PrometheusUnreachable), never an exception
that fails the whole reconcile."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from jewelry_monitoring.promapi import PrometheusAPI, PrometheusError


@contextlib.contextmanager
def answering(reply: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback TCP server that reads one request per connection and sends ``reply``."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)  # accept() wakes up to see ``stop``
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            with connection:
                connection.settimeout(5)
                with contextlib.suppress(OSError):
                    connection.recv(65536)
                    reply(connection)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        server.close()
        thread.join(timeout=10)


def ssh_banner(connection: socket.socket) -> None:
    connection.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")


def cut_short(connection: socket.socket) -> None:
    """A chunk that promises 1000 bytes, 20 sent, then the connection closes: http.client's
    IncompleteRead."""
    connection.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n3e8\r\n"
        b'{"status":"success",'
    )


def header_garbage(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\n" + b"X-" * 40000 + b"\r\n\r\n")


@pytest.mark.parametrize("reply", [ssh_banner, cut_short, header_garbage])
def test_an_answer_that_is_not_http_is_a_prometheus_error(
    reply: Callable[[socket.socket], None],
) -> None:
    with answering(reply) as url, pytest.raises(PrometheusError) as raised:
        PrometheusAPI(url, timeout=5).targets("serviceMonitor/shop/app/0")
    assert str(raised.value).startswith(f"{url}/api/v1/targets?")


def test_an_error_answer_is_a_prometheus_error() -> None:
    def not_found(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")

    with answering(not_found) as url, pytest.raises(PrometheusError, match="HTTP 404"):
        PrometheusAPI(url, timeout=5).rule_groups()
