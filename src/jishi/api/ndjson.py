"""Following a newline-delimited JSON stream over HTTP, across lost connections and server restarts.

`follow_lines` opens a streamed GET, checks its status, reads its lines and yields what `take` makes of each
parsed one that is not a heartbeat; a `{"heartbeat": ...}` line goes to `on_heartbeat` instead, and an
`{"error": ...}` line (or a reply other than 200) is raised as the `ControlPlaneError` it describes. When a
stream ends or fails it opens another, asking `query()` for its parameters each time: the caller keeps its
resume point and turns it into a query. Reconnects back off exponentially (capped, reset by every heartbeat: a
live stream) and never give up on conditions that pass — a lost connection, a server stopping or restarting
(502/503/504, `unavailable`), a closed or busy store (`store_error`); any other error is one that asking again
cannot fix and is raised at once. The caller ends it by closing the iterator.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

import httpx

from jishi.api import wire
from jishi.errors import ControlPlaneError

__all__ = ["RETRYABLE_CODES", "follow_lines"]

log = logging.getLogger(__name__)

RETRYABLE_CODES = {"unavailable", "store_error"}  # conditions that pass: server stopping, store closed or busy

T = TypeVar("T")


async def follow_lines(
    client: httpx.AsyncClient,
    path: str,
    query: Callable[[], dict[str, str]],
    take: Callable[[dict[str, Any]], T | None],
    *,
    on_heartbeat: Callable[[Any], None] | None = None,
    describe: Callable[[], str],
    http_timeout: httpx.Timeout,
    backoff: tuple[float, float],
) -> AsyncGenerator[T, None]:
    """`take(line)` of each non-heartbeat line of `GET path?query()`, parsed, forever (see module doc).

    `take` returns the item to yield, or None to skip the line (one seen before); `on_heartbeat(value)` gets each
    heartbeat's value; `describe()` says where the stream resumes, for logs.
    """
    delay = backoff[0]
    while True:
        try:
            async with client.stream("GET", path, params=query(), timeout=http_timeout) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise wire.error_from_reply(response.status_code, _json(response.content))
                async for line in response.aiter_lines():
                    if not line:
                        continue
                    data = json.loads(line)
                    if "heartbeat" in data:
                        delay = backoff[0]  # a live stream: the next failure starts its backoff afresh
                        if on_heartbeat is not None:
                            on_heartbeat(data["heartbeat"])
                        continue
                    if "error" in data:
                        raise wire.error_from_reply(200, data)
                    item = take(data)
                    if item is not None:
                        yield item
            log.info("%s: the stream ended; resuming in %.2f s", describe(), delay)
        except httpx.TransportError as exc:
            log.info("%s: %s; resuming in %.2f s", describe(), _describe(exc), delay)
        except ControlPlaneError as exc:
            if exc.code not in RETRYABLE_CODES and exc.status not in (502, 503, 504):
                raise
            log.info("%s: %s; retrying in %.2f s", describe(), exc.message, delay)
        await asyncio.sleep(delay)
        delay = min(backoff[1], delay * 2)


def _json(content: bytes) -> object:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode(errors="replace")


def _describe(exc: httpx.TransportError) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
