"""The shell of a route's bulkhead: requests waiting for a slot, and the timer that refuses them at their deadline.

The pure `jishi.core.resilience.Bulkhead` decides (run, wait with a ticket, reject); `WaitQueue` keeps the
waiting exchanges by ticket and carries its answers out on the loop:

    wait(ticket, client, ex, stage)     `ex` waits for a slot (its chain goes on from `stage` when it gets one)
    leave(now)                          a running exchange gave its slot back: the oldest live waiter gets it
                                        and `resume(client, ex, stage)` is called soon (not inside the caller)
    cancel(ticket)                      a waiter went away (its client closed)
    (timer)                             waiters past their deadline → `expired(client, ex)`
    reap()                              waiters the bulkhead dropped as timed out in `enter`/`leave` (before the
                                        timer ran) → `expired(client, ex)` soon
    waiting() -> bool                   a waiter is still there (its client connected, its request unanswered)
    close()                             the policy ends: every waiter left → `expired(client, ex)`, and so is
                                        any that comes later (a request whose Redis decision was pending)

When the route changes, the replaced policy keeps its queue until `waiting()` is False (`RoutePolicy.aclose`):
its waiters get the slots its running requests give back, or time out, as without the change.

One `loop.call_at` timer is armed at a time, for the oldest waiter's deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from jishi.gateway.policy_build import BULK, WAIT

if TYPE_CHECKING:
    from jishi.core.resilience import Bulkhead
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange

__all__ = ["WaitQueue"]

Waiter = tuple["ClientConnection", "Exchange", int]


class WaitQueue:
    """Exchanges waiting for a slot of `bulkhead`; see the module doc."""

    def __init__(
        self,
        bulkhead: Bulkhead,
        loop: asyncio.AbstractEventLoop,
        resume: Callable[[ClientConnection, Exchange, int], None],
        expired: Callable[[ClientConnection, Exchange], None],
    ) -> None:
        self.bulkhead = bulkhead
        self.loop = loop
        self._resume = resume
        self._expired = expired
        self._waiters: dict[int, Waiter] = {}
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False

    def wait(self, ticket: int, client: ClientConnection, ex: Exchange, stage: int) -> None:
        ex.ticket = ticket
        ex.held |= WAIT
        self._waiters[ticket] = (client, ex, stage)
        if self.closed:
            self.bulkhead.cancel(ticket)
            self._drop(ticket)
            return
        self._arm()

    def cancel(self, ticket: int) -> None:
        self._waiters.pop(ticket, None)
        self.bulkhead.cancel(ticket)

    def leave(self, now: float) -> None:
        """A slot is free: hand it to the oldest waiter still there, or free it."""
        bulkhead = self.bulkhead
        ticket = bulkhead.leave(now)
        while ticket is not None:
            client, ex, stage = self._waiters.pop(ticket)
            ex.held = (ex.held & ~WAIT) | BULK
            if not (ex.finished or client.closed):
                self.loop.call_soon(self._resume, client, ex, stage)
                return
            ex.held &= ~BULK
            ticket = bulkhead.leave(now)
        if bulkhead.dropped:
            self.reap()

    def reap(self) -> None:
        """Answer (soon) the waiters the bulkhead dropped as timed out on its way (`Bulkhead.take_dropped`)."""
        for ticket in self.bulkhead.take_dropped():
            self._drop(ticket)

    def _drop(self, ticket: int) -> None:
        waiter = self._waiters.pop(ticket, None)
        if waiter is None:
            return
        client, ex, _ = waiter
        ex.held &= ~WAIT
        if not (ex.finished or client.closed):
            self.loop.call_soon(self._expire_one, client, ex)

    def _expire_one(self, client: ClientConnection, ex: Exchange) -> None:
        if not (ex.finished or client.closed):
            self._expired(client, ex)

    def waiting(self) -> bool:
        return any(not (ex.finished or client.closed) for client, ex, _ in self._waiters.values())

    def _arm(self) -> None:
        deadline = self.bulkhead.next_deadline()
        if self._timer is None and deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_deadline, deadline)

    def _on_deadline(self, deadline: float) -> None:
        self._timer = None
        # The loop may run a timer a hair before its time: the deadline itself has passed.
        for ticket in self.bulkhead.expire(max(self.loop.time(), deadline)):
            client, ex, _ = self._waiters.pop(ticket)
            ex.held &= ~WAIT
            if not (ex.finished or client.closed):
                self._expired(client, ex)
        if self.bulkhead.dropped:
            self.reap()
        self._arm()

    def close(self) -> None:
        """The route's policy ends: no waiter is left waiting for a timer that no longer runs."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for ticket in list(self._waiters):
            self.bulkhead.cancel(ticket)
            self._drop(ticket)
