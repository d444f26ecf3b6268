"""Following the event log over HTTP, across lost connections and server restarts.

The server's `GET /v1/events?follow=true&since=ID` sends the events after ID, then each new one, with
`{"heartbeat": time}` lines when idle. Event ids sort by time and are never reused, so resuming is simply asking
again with `since=` the id of the last event delivered: nothing is missed and nothing is delivered twice.
Reconnects back off exponentially (capped) and never give up on conditions that pass (a lost connection, a
server stopping or restarting); any other error (a bad request) is raised. The caller ends it by closing the
iterator.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx

from jishi.api import wire
from jishi.api.resume import RETRYABLE_CODES
from jishi.errors import ControlPlaneError
from jishi.registry.model import EventRecord

__all__ = ["follow_events"]

log = logging.getLogger(__name__)


async def follow_events(
    client: httpx.AsyncClient,
    since: str | None,
    *,
    kind: str | None = None,
    subject: str | None = None,
    idle_timeout: float = 10.0,
    connect_timeout: float = 5.0,
    backoff: tuple[float, float] = (0.05, 2.0),
) -> AsyncIterator[EventRecord]:
    """Events after the id `since` (None: from the moment the first stream opens), then new ones, forever."""
    last = since
    delay = backoff[0]
    timeout = httpx.Timeout(connect_timeout, read=idle_timeout)
    while True:
        params = {"follow": "true", **{k: v for k, v in (("kind", kind), ("subject", subject)) if v}}
        if last is not None:
            params["since"] = last
        try:
            async with client.stream("GET", "/v1/events", params=params, timeout=timeout) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise wire.error_from_reply(response.status_code, _json(response.content))
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    data = json.loads(line)
                    if "heartbeat" in data:
                        delay = backoff[0]
                        if last is None:  # resume from here, not from whenever the next stream opens
                            last = _id_at(float(data["heartbeat"]))
                        continue
                    if "error" in data:
                        raise wire.error_from_reply(200, data)
                    event = EventRecord.model_validate(data)
                    if last is None or event.id > last:
                        last = event.id
                        yield event
            log.info("event stream ended; following again after %s", last)
        except httpx.TransportError as exc:
            log.info("event stream: %s; following again in %.2f s", type(exc).__name__, delay)
        except ControlPlaneError as exc:
            if exc.code not in RETRYABLE_CODES and exc.status not in (502, 503, 504):
                raise
            log.info("event stream: %s; following again in %.2f s", exc.message, delay)
        await asyncio.sleep(delay)
        delay = min(backoff[1], delay * 2)


def _id_at(unix: float) -> str:
    """The smallest id stamped after `unix` (ids are 16-digit microseconds + 4 hex)."""
    return f"{int(unix * 1e6):016d}ffff"


def _json(content: bytes) -> object:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode(errors="replace")
