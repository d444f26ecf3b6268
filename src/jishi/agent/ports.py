"""Ports for instances: each slot keeps its port across restarts while the port stays free."""

from __future__ import annotations

import socket

__all__ = ["PortAllocator"]


def _bindable(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (SO_REUSEADDR, as servers set it: TIME_WAIT is no obstacle)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PortAllocator:
    """Hands out loopback ports per slot key; `acquire` returns the slot's previous port when still free."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._ports: dict[str, int] = {}

    def acquire(self, slot: str) -> int:
        previous = self._ports.get(slot)
        if previous is not None and _bindable(self.host, previous):
            return previous
        taken = set(self._ports.values())
        for _ in range(100):
            port = _ephemeral(self.host)
            if port not in taken:
                self._ports[slot] = port
                return port
        raise OSError(f"no free port on {self.host} after 100 tries")  # pragma: no cover - exhausted host

    def release(self, slot: str) -> None:
        self._ports.pop(slot, None)

    def get(self, slot: str) -> int | None:
        return self._ports.get(slot)
