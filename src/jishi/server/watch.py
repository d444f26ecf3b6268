"""Watch streams: a store watch turned into newline-delimited JSON for one HTTP response.

Each stream sends `{"heartbeat": revision}` first and whenever nothing happens for `heartbeat` seconds, one event
line per store event from the start revision on, and ends with one `{"error": ...}` line if the watch cannot go on
(its start was compacted while it caught up, the store closed). The queue, pump task, batching and shutdown
(`close_all`) are `jishi.server.streams.LineStreams`'.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from jishi.api import wire
from jishi.registry import Registry
from jishi.server.streams import LineStreams
from jishi.store import Event

__all__ = ["WatchStreams"]

log = logging.getLogger(__name__)


class WatchStreams(LineStreams[Event]):
    """The open watch streams of one server, and how each is written."""

    def __init__(self, registry: Registry, *, heartbeat: float = 2.0) -> None:
        super().__init__("watch", heartbeat=heartbeat)
        self._registry = registry

    def lines(self, prefix: str, start_revision: int) -> AsyncIterator[bytes]:
        """The body of one watch response: event lines from `start_revision`, heartbeats, maybe an error."""
        return self.stream(
            lambda: self._registry.watch(prefix, start_revision),
            wire.event_line,
            self._heartbeat,
            f"{prefix!r} from revision {start_revision}",
        )

    async def _heartbeat(self) -> bytes:
        return wire.heartbeat_line(await self._registry.revision())
