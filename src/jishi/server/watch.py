"""Watch streams: a store watch turned into newline-delimited JSON for one HTTP response.

Theory of operation
-------------------
Each stream owns one *pump* task that reads the registry's watch (an async generator over the store) and puts
events into a bounded queue; the response body generator takes them from the queue, batching whatever is
already waiting into one chunk. The pump exists because the body must also say something when nothing happens:
if no event arrives for `heartbeat` seconds it sends `{"heartbeat": revision}`, so a client can tell a quiet
watch from a dead connection (and waiting on a queue with a timeout is safe, where cancelling the store's
generator mid-step would end it). A full queue stops the pump, so a slow client slows its own watch only.

A watch that cannot go on (its start was compacted while it caught up, the store closed) ends with one
`{"error": ...}` line. `WatchStreams.close_all()` ends every open stream cleanly; the server calls it first
thing on shutdown, so no response is left hanging while the process exits. The pump belongs to its stream:
the body generator cancels and awaits it when it ends, whether the client left or the server is stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import cast

from jishi.api import wire
from jishi.errors import JishiError
from jishi.registry import Registry
from jishi.store import Event

__all__ = ["WatchStreams"]

log = logging.getLogger(__name__)

QUEUE_SIZE = 512  # events buffered per stream before the pump waits for the client
BATCH = 256  # events written in one chunk at most


class _End:
    """Queued by `close_all` to wake a stream that is waiting for events."""


_END = _End()
_Item = Event | BaseException | _End


class WatchStreams:
    """The open watch streams of one server, and how each is written."""

    def __init__(self, registry: Registry, *, heartbeat: float = 2.0) -> None:
        self._registry = registry
        self.heartbeat = heartbeat
        self._queues: set[asyncio.Queue[_Item]] = set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._queues)

    def close_all(self) -> None:
        """End every open stream (after what it has queued) and refuse nothing new: the server is stopping."""
        self.closing = True
        for queue in self._queues:
            with contextlib.suppress(asyncio.QueueFull):  # a full queue means its stream is not waiting
                queue.put_nowait(_END)
        if self._queues:
            log.info("closing %d watch streams", len(self._queues))

    async def lines(self, prefix: str, start_revision: int) -> AsyncIterator[bytes]:
        """The body of one watch response: event lines from `start_revision`, heartbeats, maybe an error."""
        queue: asyncio.Queue[_Item] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        pump = asyncio.create_task(self._pump(prefix, start_revision, queue), name=f"jishi-watch:{prefix}")
        log.debug("watch of %r from revision %d opened", prefix, start_revision)
        try:
            yield wire.heartbeat_line(await self._registry.revision())
            while not self.closing:
                try:
                    first = await asyncio.wait_for(queue.get(), self.heartbeat)
                except TimeoutError:
                    yield wire.heartbeat_line(await self._registry.revision())
                    continue
                items = [first]
                while len(items) < BATCH and not queue.empty():
                    items.append(queue.get_nowait())
                chunk, done = _encode(items)
                if chunk:
                    yield chunk
                if done:
                    return
        finally:
            self._queues.discard(queue)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            log.debug("watch of %r closed", prefix)

    async def _pump(self, prefix: str, start_revision: int, queue: asyncio.Queue[_Item]) -> None:
        events = cast(AsyncGenerator[Event, None], self._registry.watch(prefix, start_revision))
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    await queue.put(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.closing:
                log.debug("watch of %r ended by shutdown: %s", prefix, exc)
            else:
                log.warning("watch of %r ended: %s", prefix, exc, exc_info=not isinstance(exc, JishiError))
            await queue.put(exc)


def _encode(items: list[_Item]) -> tuple[bytes, bool]:
    """The chunk for `items`, and whether the stream ends after it."""
    parts: list[bytes] = []
    for item in items:
        if isinstance(item, _End):
            return b"".join(parts), True
        if isinstance(item, BaseException):
            parts.append(wire.error_line(item))
            return b"".join(parts), True
        parts.append(wire.event_line(item))
    return b"".join(parts), False
