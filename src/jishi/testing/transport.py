"""An in-memory asyncio transport, for driving protocols (the gateway's, or a user's) without sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["MemoryTransport"]


class MemoryTransport:
    """Just enough of `asyncio.Transport`: what is written is kept (`keep=True`) and counted (`written`).

    `on_write`, if given, is called after every write — a benchmark uses it to learn which connection has
    something to answer. `closed` turns true on close() or abort().
    """

    def __init__(self, peer: tuple[str, int], *, keep: bool = True, on_write: Callable[[], None] | None = None) -> None:
        self.peer = peer
        self.keep = keep
        self.on_write = on_write
        self.data = bytearray()
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += len(data)
        if self.keep:
            self.data += data
        if self.on_write is not None:
            self.on_write()

    def writelines(self, pieces: Iterable[bytes]) -> None:
        for piece in pieces:
            self.written += len(piece)
            if self.keep:
                self.data += piece
        if self.on_write is not None:
            self.on_write()

    def take(self) -> bytes:
        """What was written since the last take()."""
        out = bytes(self.data)
        self.data.clear()
        return out

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_write_eof(self) -> bool:
        return False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True
