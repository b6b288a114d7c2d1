"""Pod IPs that are addresses of this host, so that a real Prometheus discovering pods the
control plane only knows as objects (no node runs them) scrapes local processes.

The API server refuses loopback pod IPs in EndpointSlices (and the EndpointSlice controller
then lists no endpoint), so the pods get addresses from 10.251.0.0/16, a range neither the
node (10.244.0.0/16), the Services (10.96.0.0/16) nor the host's networks use. Each is a /32
on an interface of its own, a bridge without ports (this kernel has no dummy interfaces): the
kernel delivers packets to them locally (the ``local`` routing table), and with /32
addresses no route leads anywhere through it, so no packet to them leaves the host (checked
by inspecting ``ip route get``, never by sending). The interface goes at exit.

    local_pod_addresses(count) -> list[str]   # context manager
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator

PREFIX = "10.251"


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@contextlib.contextmanager
def local_pod_addresses(count: int) -> Iterator[list[str]]:
    """``count`` addresses of this host (one /24 per process: runs side by side differ)."""
    link = f"jm-pods-{uuid.uuid4().hex[:6]}"
    subnet = f"{PREFIX}.{os.getpid() % 250 + 1}"
    addresses = [f"{subnet}.{10 + index}" for index in range(count)]
    _ip("link", "add", link, "type", "bridge")
    try:
        for address in addresses:
            _ip("addr", "add", f"{address}/32", "dev", link)
        _ip("link", "set", link, "up")
        for address in addresses:
            route = _ip("route", "get", address)
            if not route.startswith(f"local {address} "):
                raise RuntimeError(f"{address} is not delivered locally: {route.strip()}")
        yield addresses
    finally:
        _ip("link", "delete", link, check=False)
