"""`WriteBatch`: the gateway's writes of one event-loop turn, made together once the turn's events are handled.

A connection (client or instance side) that has bytes to send appends them to its `out` list and is *queued*
here once; after every read of this loop turn has been handled, `run` writes each queued connection's bytes
in one `transport.write` (`write_now` on the connection). Nothing waits longer than the current turn: the
callback is scheduled with `call_soon`, which uvloop runs before it polls for I/O again.

Why not write at once: every write to a loopback socket runs the receiver's TCP path and wakes the receiving
process in the writer's syscall. Written one by one between the Python work of each request, the writes find
the receivers (the instances, the clients) asleep again and again, and each wake-up of a sleeping process on
another CPU costs several microseconds of the gateway's kernel time (an inter-processor interrupt; more in a
virtual machine). Written back to back after the turn's work, one wake-up covers many writes, and the Python
work of the turn runs with warm caches instead of between syscalls. Measured side by side with the gateway
before it (`bench/gateway_ab.py --base 847fdb3`, full chain, 64 connections): 26 % less CPU per request.

Connections implement `write_now()` (write `out` unless closed; clear `queued`) and carry `queued` and `out`.
A connection about to close, or to hand its transport to a raw tunnel, calls its `write_now()` first, so the
bytes queued before the close are never left behind or reordered.

Flow control: the loop reads a busy socket up to 32 times in one turn, and a receiver's transport can ask for a
pause (`pause_writing`, which stops reading the sender) only for bytes written to it. So once one connection's
relayed bytes of this turn reach `BATCH_MAX` (64 KiB; `queue(conn, size)`: a request body in
`UpstreamConnection.write`, a response in `ClientConnection.flush_read`) they are written at once: a write
buffer then passes its high-water mark by about a read, as without the batch, not by megabytes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

__all__ = ["BATCH_MAX", "WriteBatch", "Writer"]

log = logging.getLogger(__name__)

BATCH_MAX = 64 * 1024  # relayed bytes of one connection in one loop turn that are written at once


class Writer(Protocol):
    queued: bool
    queued_size: int  # relayed bytes queued this turn (`WriteBatch.queue`)

    def write_now(self) -> None: ...


class WriteBatch:
    """The connections with bytes to write this loop turn; see the module doc."""

    __slots__ = ("_held", "_loop", "_queued", "_scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queued: list[Writer] = []
        self._scheduled = False
        self._held = False

    def hold(self) -> None:
        """Queue without scheduling from now on: whoever drives the connections without letting the loop turn
        (the in-memory benchmarks) calls `run` itself, as the loop would at the end of each turn."""
        self._held = self._scheduled = True

    def add(self, conn: Writer) -> None:
        """Write `conn`'s bytes at the end of this loop turn (once, however often it is added in the turn)."""
        if conn.queued:
            return
        conn.queued = True
        conn.queued_size = 0
        self._queued.append(conn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.run)

    def queue(self, conn: Writer, size: int) -> None:
        """`conn` has `size` more relayed bytes to write: with this turn's writes, or at once when its bytes of
        this turn reach `BATCH_MAX` (see the module doc: flow control)."""
        if conn.queued:
            size += conn.queued_size
        if size >= BATCH_MAX:
            conn.write_now()
            return
        self.add(conn)
        conn.queued_size = size

    def run(self) -> None:
        """Write every queued connection's bytes now."""
        self._scheduled = self._held
        queued, self._queued = self._queued, []
        for conn in queued:
            try:
                conn.write_now()
            except Exception:  # one connection's failure must not keep the others' bytes back
                log.exception("gateway: writing to %r failed", conn)
