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

so every event is delivered once, in order, without gaps. The stream itself (reconnects, heartbeats, error lines)
is `jishi.api.ndjson.follow_lines`. Reconnects back off exponentially (capped) and never
give up on conditions that pass — a lost connection, a server stopping or restarting (502/503/504, `unavailable`),
a closed or busy store (`store_error`) — and the caller ends the watch by closing the iterator. Any other error is
one that asking again cannot fix (an invalid request, `invalid_request`; a missing record) and is raised at once.
If the resume point has been compacted away the watch raises `CompactedError`: the caller must take a new
snapshot, since the events in between are lost.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx

from jishi.api import wire
from jishi.api.ndjson import follow_lines
from jishi.store import Event

__all__ = ["WatchPosition", "resumable_watch"]


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


def resumable_watch(
    client: httpx.AsyncClient,
    prefix: str,
    start_revision: int,
    *,
    idle_timeout: float = 10.0,
    connect_timeout: float = 5.0,
    backoff: tuple[float, float] = (0.05, 2.0),
) -> AsyncGenerator[Event, None]:
    """Events under `prefix` from `start_revision` (> 0) over `client`, reconnecting as needed (see module doc)."""
    pos = WatchPosition(start_revision)
    skip = 0

    def query() -> dict[str, str]:
        nonlocal skip
        skip = pos.seen  # the new stream sends these events of `pos.revision` again
        return {"prefix": prefix, "start_revision": str(pos.revision)}

    def take(data: dict[str, Any]) -> Event | None:
        nonlocal skip
        event = wire.event_from_line(data)
        deliver, skip = pos.admit(event, skip)
        return event if deliver else None

    return follow_lines(
        client,
        "/v1/watch",
        query,
        take,
        describe=lambda: f"watch of {prefix!r} (at revision {pos.revision})",
        http_timeout=httpx.Timeout(connect_timeout, read=idle_timeout),
        backoff=backoff,
    )
