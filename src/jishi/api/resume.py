"""A watch over HTTP that survives lost connections and server restarts.

Theory of operation
-------------------
The server's watch stream is a plain HTTP response; it ends when the connection drops, the server restarts or
the server goes quiet past the idle limit (it sends a heartbeat line every few seconds, so silence means a dead
connection). The store keeps history, so a new stream from the right revision continues where the old one
stopped. The position kept is the revision of the last event delivered and how many events of that revision
were delivered (one txn can write several keys at one revision and the connection can drop between them):

    resume from `revision` and skip the first `seen` events of that revision     (seen > 0)
    resume from `next_revision`                                                   (nothing seen yet)

so every event is delivered once, in order, without gaps. Reconnects back off exponentially (capped) and never
give up on conditions that pass — a lost connection, a server stopping or restarting (502/503/504, `unavailable`),
a closed or busy store (`store_error`) — and the caller ends the watch by closing the iterator. Any other error is
one that asking again cannot fix (an invalid request, `invalid_request`; a missing record) and is raised at once.
If the resume point has been compacted away the watch raises `CompactedError`: the caller must take a new
snapshot, since the events in between are lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from jishi.api import wire
from jishi.errors import ControlPlaneError
from jishi.store import Event

__all__ = ["WatchPosition", "resumable_watch"]

log = logging.getLogger(__name__)

RETRYABLE_CODES = {"unavailable", "store_error"}  # conditions that pass: server stopping, store closed or busy


@dataclass
class WatchPosition:
    """Where a watch is: the next revision to ask for and the events already seen of the current one."""

    revision: int
    seen: int = 0  # events of `revision` already delivered (0: `revision` is the next one wanted, untouched)

    def admit(self, event: Event, skip: int) -> tuple[bool, int]:
        """Whether `event` is new (deliver it) given `skip` events of `revision` still to drop; the new skip."""
        rev = event.kv.mod_revision
        if rev < self.revision:
            return False, skip
        if rev == self.revision and skip > 0:
            return False, skip - 1
        if rev == self.revision:
            self.seen += 1
        else:
            self.revision, self.seen = rev, 1
        return True, 0


async def resumable_watch(
    client: httpx.AsyncClient,
    prefix: str,
    start_revision: int,
    *,
    idle_timeout: float = 10.0,
    connect_timeout: float = 5.0,
    backoff: tuple[float, float] = (0.05, 2.0),
) -> AsyncIterator[Event]:
    """Events under `prefix` from `start_revision` (> 0) over `client`, reconnecting as needed (see module doc)."""
    pos = WatchPosition(start_revision)
    delay = backoff[0]
    timeout = httpx.Timeout(connect_timeout, read=idle_timeout)
    while True:
        skip = pos.seen
        params = {"prefix": prefix, "start_revision": str(pos.revision)}
        try:
            async with client.stream("GET", "/v1/watch", params=params, timeout=timeout) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise wire.error_from_reply(response.status_code, _json(response.content))
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    data = json.loads(line)
                    if "heartbeat" in data:
                        delay = backoff[0]  # a live stream: the next failure starts its backoff afresh
                        continue
                    if "error" in data:
                        raise wire.error_from_reply(200, data)
                    event = wire.event_from_line(data)
                    deliver, skip = pos.admit(event, skip)
                    if deliver:
                        yield event
            log.info("watch of %r: the stream ended; resuming from revision %d", prefix, pos.revision)
        except httpx.TransportError as exc:
            log.info(
                "watch of %r: %s; resuming from revision %d in %.2f s", prefix, _describe(exc), pos.revision, delay
            )
        except ControlPlaneError as exc:
            if exc.code not in RETRYABLE_CODES and exc.status not in (502, 503, 504):
                raise
            log.info("watch of %r: %s; retrying in %.2f s", prefix, exc.message, delay)
        await asyncio.sleep(delay)
        delay = min(backoff[1], delay * 2)


def _json(content: bytes) -> object:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode(errors="replace")


def _describe(exc: httpx.TransportError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
