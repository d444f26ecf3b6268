"""Following the event log over HTTP, across lost connections and server restarts.

The server's `GET /v1/events?follow=true&since=ID` sends the events after ID, then each new one, with
`{"heartbeat": time}` lines when idle. Event ids sort by time and are never reused, so resuming is simply asking
again with `since=` the id of the last event delivered: nothing is missed and nothing is delivered twice.
Reconnects back off exponentially (capped) and never give up on conditions that pass (a lost connection, a
server stopping or restarting); any other error (a bad request) is raised. The caller ends it by closing the
iterator. The stream itself (reconnects, heartbeats, error lines) is `jishi.api.ndjson.follow_lines`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import httpx

from jishi.api.ndjson import follow_lines
from jishi.registry.model import EventRecord

__all__ = ["follow_events"]


def follow_events(
    client: httpx.AsyncClient,
    since: str | None,
    *,
    kind: str | None = None,
    subject: str | None = None,
    idle_timeout: float = 10.0,
    connect_timeout: float = 5.0,
    backoff: tuple[float, float] = (0.05, 2.0),
) -> AsyncGenerator[EventRecord, None]:
    """Events after the id `since` (None: from the moment the first stream opens), then new ones, forever."""
    last = since

    def query() -> dict[str, str]:
        params = {"follow": "true", **{k: v for k, v in (("kind", kind), ("subject", subject)) if v}}
        if last is not None:
            params["since"] = last
        return params

    def on_heartbeat(unix: Any) -> None:
        nonlocal last
        if last is None:  # resume from here, not from whenever the next stream opens
            last = _id_at(float(unix))

    def take(data: dict[str, Any]) -> EventRecord | None:
        nonlocal last
        event = EventRecord.model_validate(data)
        if last is not None and event.id <= last:
            return None
        last = event.id
        return event

    return follow_lines(
        client,
        "/v1/events",
        query,
        take,
        on_heartbeat=on_heartbeat,
        describe=lambda: f"event stream (after {last})",
        http_timeout=httpx.Timeout(connect_timeout, read=idle_timeout),
        backoff=backoff,
    )


def _id_at(unix: float) -> str:
    """The smallest id stamped after `unix` (ids are 16-digit microseconds + 4 hex)."""
    return f"{int(unix * 1e6):016d}ffff"
