"""Following one prefix of the control plane: a snapshot, then its watch, for as long as the owner runs.

`follow()` is the loop of every follower — the gateway's routing table, the agent's desired services, the
client SDK's service directory:

1. read a snapshot of the prefix and hand it to `on_snapshot(revision, kvs)`;
2. hand every watch event from `revision + 1` on to `on_event(event)`;
3. when the watch's start was compacted away (`CompactedError`) or the watch ends, go back to 1 at once;
4. when anything else fails (the control plane is unreachable, say), call `on_error(exc)` so the owner can
   fall back (to a saved copy), then retry after a pause that doubles from `backoff[0]` up to `backoff[1]`
   and starts over after a successful snapshot.

The watch is always closed before the next try, so its HTTP stream is released at once rather than whenever
the garbage collector gets to it. `follow()` returns only by cancellation; the owner's task group owns it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import NoReturn

from jishi.errors import CompactedError
from jishi.registry.protocol import ControlPlane
from jishi.store import Event, KeyValue

__all__ = ["follow"]

log = logging.getLogger(__name__)


async def follow(
    cp: ControlPlane,
    prefix: str,
    *,
    on_snapshot: Callable[[int, list[KeyValue]], None],
    on_event: Callable[[Event], None],
    on_error: Callable[[BaseException], None] | None = None,
    backoff: tuple[float, float] = (0.05, 2.0),
    name: str = "",
) -> NoReturn:
    """Follow `prefix` on `cp` until cancelled (see the module docstring)."""
    what = name or prefix
    pause = backoff[0]
    while True:
        try:
            revision, kvs = await cp.snapshot(prefix)
            on_snapshot(revision, kvs)
            pause = backoff[0]
            watch = cp.watch(prefix, revision + 1)
            try:
                async for event in watch:
                    on_event(event)
            finally:
                aclose = getattr(watch, "aclose", None)
                if aclose is not None:
                    await aclose()
            log.info("%s: the watch ended; reading a fresh snapshot", what)
        except CompactedError as exc:
            log.info("%s: the watch fell behind compaction (%s); reading a fresh snapshot", what, exc)
        except Exception as exc:
            if on_error is not None:
                on_error(exc)
            log.warning("%s: cannot follow the control plane (%s); retrying in %.2f s", what, exc, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, backoff[1])
