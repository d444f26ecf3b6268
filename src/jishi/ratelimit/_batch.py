"""Coalescing: the decisions asked in one event-loop turn travel to Redis as one pipelined round trip.

Theory of operation
-------------------
A busy gateway worker asks for many decisions at once (one per request in flight). Sent one by one, each costs a
full client round trip (a pooled connection, a send and a receive system call, a reply parsed: ~200 µs in
redis-py on loopback); pipelined, a hundred cost about a quarter of that each. So `Batcher.run(script, keys, args)`
sends the call at once, as a plain command, when the client is idle (no round trip under way, nothing queued:
sequential use pays nothing extra). Otherwise it queues the call; the first queued call of a turn schedules a
flush with `call_soon`, which sends everything queued by then as one pipeline (`transaction=False`: every EVALSHA
stays atomic on its own; they are not atomic together, nor need to be).

Replies are matched to callers in order. A NOSCRIPT reply (the server lost its script cache) is answered by one
more pipeline of EVAL with the source, which caches the script again. An error of the whole round trip (the
connection refused or broken, the `timeout` reached) fails every call of the batch with it; each caller falls back
on its own. A caller that stopped waiting (its own timeout) is skipped. The flush tasks belong to the `Batcher`:
`aclose()` cancels and awaits them, and fails what is still queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from jishi.ratelimit._scripts import Script

__all__ = ["Batcher"]

_Call = tuple[Script, Sequence[str], Sequence[object], "asyncio.Future[Any]"]


class Batcher:
    """Sends the script calls made in one loop turn to `client` as one pipeline, each bounded by `timeout`."""

    def __init__(self, client: Any, timeout: float, max_batch: int = 512) -> None:
        self._client = client
        self._timeout = timeout
        self._max_batch = max_batch
        self._queued: list[_Call] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._in_flight = 0  # round trips under way

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[object]) -> Any:
        """Run `script` once: at once when the client is idle, else with the other calls of this loop turn."""
        if self._closed:
            raise RuntimeError("the rate limiter is closed")
        if not self._in_flight and not self._queued:
            self._in_flight += 1
            try:
                return await script(self._client, keys, args)
            finally:
                self._in_flight -= 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((script, keys, args, future))
        if len(self._queued) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        for start in range(0, len(queued), self._max_batch):
            task = asyncio.get_running_loop().create_task(self._send(queued[start : start + self._max_batch]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Call]) -> None:
        batch = [call for call in batch if not call[3].done()]
        if not batch:
            return
        self._in_flight += 1
        try:
            async with asyncio.timeout(self._timeout):
                if len(batch) == 1:
                    script, keys, args, future = batch[0]
                    replies: list[Any] = [await script(self._client, keys, args)]
                else:
                    replies = await self._pipeline(batch)
        except Exception as exc:
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for *_, future in batch:
                future.cancel()
            raise
        finally:
            self._in_flight -= 1
        for (*_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for script, keys, args, _ in batch:
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            pipe = self._client.pipeline(transaction=False)
            for i in missing:
                script, keys, args, _ = batch[i]
                pipe.eval(script.source, len(keys), *keys, *args)
            for i, reply in zip(missing, await pipe.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        return replies

    async def aclose(self) -> None:
        """Cancel the round trips in flight and fail the calls still queued."""
        self._closed = True
        for *_, future in self._queued:
            future.cancel()
        self._queued = []
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
