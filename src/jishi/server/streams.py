"""Long-lived NDJSON responses fed by an async source: what the watch and event-follow streams share.

Theory of operation
-------------------
Each stream owns one *pump* task that reads its source (an async generator, e.g. a store watch) and puts items
into a bounded queue; the response body generator takes them from the queue, batching whatever is already
waiting into one chunk. The pump exists because the body must also say something when nothing happens: if no
item arrives for `heartbeat` seconds it sends a heartbeat line, so a client can tell a quiet stream from a dead
connection (and waiting on a queue with a timeout is safe, where cancelling the source mid-step would end it).
A full queue stops the pump, so a slow client slows its own stream only.

A source that fails (its start was compacted while it caught up, the store closed) ends the stream with one
`{"error": ...}` line. `LineStreams.close_all()` ends every open stream cleanly (after what it has queued); the
server calls it first thing on shutdown, so no response is left hanging while the process exits. The pump
belongs to its stream: the body generator cancels and awaits it when it ends, whether the client left or the
server is stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Generic, TypeVar, cast

from jishi.api import wire
from jishi.errors import JishiError

__all__ = ["LineStreams"]

log = logging.getLogger(__name__)

QUEUE_SIZE = 512  # items buffered per stream before the pump waits for the client
BATCH = 256  # items written in one chunk at most

T = TypeVar("T")


class _End:
    """Queued by `close_all` to wake a stream that is waiting for items."""


_END = _End()


class LineStreams(Generic[T]):
    """The open streams of one kind (`kind`, for logs and task names) on one server, and how each is written."""

    def __init__(self, kind: str, *, heartbeat: float = 2.0) -> None:
        self.kind = kind
        self.heartbeat = heartbeat
        self._queues: set[asyncio.Queue[T | BaseException | _End]] = set()
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
            log.info("closing %d %s streams", len(self._queues), self.kind)

    async def stream(
        self,
        source: Callable[[], AsyncIterator[T]],
        line: Callable[[T], bytes],
        heartbeat: Callable[[], Awaitable[bytes]],
        label: str,
    ) -> AsyncIterator[bytes]:
        """One response body: a heartbeat, then `line(item)` for each item of `source()` (opened by the pump),
        `heartbeat()` whenever idle for `self.heartbeat` seconds, and an error line if the source fails."""
        queue: asyncio.Queue[T | BaseException | _End] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        pump = asyncio.create_task(self._pump(source, label, queue), name=f"jishi-{self.kind}:{label}")
        log.debug("%s stream %s opened", self.kind, label)
        try:
            yield await heartbeat()
            while not self.closing:
                try:
                    first = await asyncio.wait_for(queue.get(), self.heartbeat)
                except TimeoutError:
                    yield await heartbeat()
                    continue
                items = [first]
                while len(items) < BATCH and not queue.empty():
                    items.append(queue.get_nowait())
                chunk, done = _encode(items, line)
                if chunk:
                    yield chunk
                if done:
                    return
        finally:
            self._queues.discard(queue)
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            log.debug("%s stream %s closed", self.kind, label)

    async def _pump(
        self, source: Callable[[], AsyncIterator[T]], label: str, queue: asyncio.Queue[T | BaseException | _End]
    ) -> None:
        items = cast(AsyncGenerator[T, None], source())
        try:
            async with contextlib.aclosing(items):
                async for item in items:
                    await queue.put(item)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self.closing:
                log.debug("%s stream %s ended by shutdown: %s", self.kind, label, exc)
            else:
                log.warning("%s stream %s ended: %s", self.kind, label, exc, exc_info=not isinstance(exc, JishiError))
            await queue.put(exc)


def _encode(items: list[T | BaseException | _End], line: Callable[[T], bytes]) -> tuple[bytes, bool]:
    """The chunk for `items`, and whether the stream ends after it."""
    parts: list[bytes] = []
    for item in items:
        if isinstance(item, _End):
            return b"".join(parts), True
        if isinstance(item, BaseException):
            parts.append(wire.error_line(item))
            return b"".join(parts), True
        parts.append(line(item))
    return b"".join(parts), False
