"""A stand-in for another process that binds a port the moment the devkit chose it.

Between ``devkit.ports.free_port`` finding a port free and a launched process binding it,
another pytest-xdist worker's launcher, a pod or any program may take it. Tests make that
happen on purpose: the thief wraps the chooser's check and takes the next ``steal(n)`` ports
it finds free, bound on every address and listening (so whatever probes the port gets an
answer that is not the component's), until ``release()``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable


class PortThief:
    def __init__(self) -> None:
        self.stolen: list[int] = []
        self._held: list[socket.socket] = []
        self._to_steal = 0

    def steal(self, count: int) -> None:
        """Take the next ``count`` ports the chooser finds free."""
        self._to_steal += count

    def watching(self, bindable: Callable[[int], bool]) -> Callable[[int], bool]:
        """``bindable`` (the chooser's check), taking each port it finds free while armed."""

        def check_then_take(port: int) -> bool:
            free = bindable(port)
            if free and self._to_steal:
                self._to_steal -= 1
                held = socket.socket()
                held.bind(("0.0.0.0", port))
                held.listen()
                self._held.append(held)
                self.stolen.append(port)
            return free

        return check_then_take

    def release(self) -> None:
        for held in self._held:
            held.close()
        self._held.clear()
