"""The asyncio shell of the pure `Bulkhead`: callers wait on futures; the core decides who runs.

`async with gate:` enters the bulkhead. A RUN admission proceeds at once; WAIT parks the caller on a future
until a leaving call hands it the slot or its wait (`max_wait`) runs out; REJECT (and a timed-out wait) raises
`CallRejected`. A caller cancelled while waiting gives its place back; if the slot had just been handed to it,
it passes the slot on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType

from jishi.core.resilience import Admission, Bulkhead
from jishi.errors import CallRejected

__all__ = ["BulkheadGate"]


class BulkheadGate:
    def __init__(self, bulkhead: Bulkhead, *, service: str, clock: Callable[[], float]) -> None:
        self.bulkhead = bulkhead
        self.service = service
        self.clock = clock
        self._waiters: dict[int, asyncio.Future[None]] = {}

    async def __aenter__(self) -> None:
        b = self.bulkhead
        admission, ticket = b.enter(self.clock())
        if admission is Admission.RUN:
            return
        if admission is Admission.REJECT:
            raise CallRejected(
                f"bulkhead of service {self.service!r} is full ({b.active} calls running, {b.waiting} waiting)",
                service=self.service,
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[ticket] = future
        try:
            async with asyncio.timeout(b.max_wait):
                await future
        except TimeoutError:
            if b.cancel(ticket) or not future.done():
                raise CallRejected(
                    f"bulkhead of service {self.service!r}: no slot within {b.max_wait:g} s",
                    service=self.service,
                ) from None
            # The slot was handed over just as the wait ran out: take it.
        except asyncio.CancelledError:
            if not b.cancel(ticket) and future.done() and not future.cancelled():
                self._leave()  # it held a slot: pass it on
            raise
        finally:
            self._waiters.pop(ticket, None)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._leave()

    def _leave(self) -> None:
        now = self.clock()
        ticket = self.bulkhead.leave(now)
        while ticket is not None:
            future = self._waiters.get(ticket)
            if future is not None and not future.done():
                future.set_result(None)
                return
            ticket = self.bulkhead.leave(now)  # that waiter is gone: pass the slot on
