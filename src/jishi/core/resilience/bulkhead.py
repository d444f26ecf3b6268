"""Bulkhead: at most `max_concurrent` calls at once, with a bounded, timed wait queue in front.

Theory of operation
-------------------
The pure part decides; the shell waits. `enter(now)` answers one of

    RUN      a slot was free: the call runs now (the caller must `leave(now)` when it ends);
    WAIT     every slot is busy but the queue has room: the caller gets a ticket and waits, at most until
             `now + max_wait`;
    REJECT   slots and queue are full (or there is no queue): refuse the call.

When a running call ends, `leave(now)` hands its slot straight to the oldest waiter whose deadline has not
passed and returns that ticket (the shell wakes it; it now holds a slot), or frees the slot. Waiters past their
deadline are dropped on the way and counted in `timed_out`; `expire(now)` drops them eagerly and returns their
tickets so the shell can fail them at `next_deadline()`. Built with `keep_dropped=True`, the tickets `enter` and
`leave` drop on the way are kept until `take_dropped()` collects them, so a shell that answers each waiter itself
never loses one (a shell whose waiters time out on their own, with `cancel`, needs no list).
A waiter that gives up by itself calls `cancel(ticket)`:
True if it was still queued and is now removed; False if it was not queued any more — either `leave` had already
handed it a slot (the shell knows: it got that ticket back from `leave`, and the waiter must `leave` in turn) or
it had already been dropped as timed out. The queue is FIFO, and since every waiter waits the same `max_wait`,
deadlines are in queue order.
"""

from __future__ import annotations

import enum
from collections import OrderedDict

__all__ = ["Admission", "Bulkhead"]


class Admission(enum.Enum):
    RUN = "run"
    WAIT = "wait"
    REJECT = "reject"


class Bulkhead:
    """Concurrency limit with a FIFO wait queue of at most `max_queue` callers, each waiting ≤ `max_wait`."""

    __slots__ = (
        "_queue",
        "_seq",
        "active",
        "dropped",
        "max_concurrent",
        "max_queue",
        "max_wait",
        "rejected",
        "timed_out",
    )

    def __init__(
        self, max_concurrent: int, max_queue: int = 0, max_wait: float = 0.0, *, keep_dropped: bool = False
    ) -> None:
        if max_concurrent < 1:
            raise ValueError(f"bulkhead max_concurrent must be at least 1, not {max_concurrent}")
        if max_queue < 0:
            raise ValueError(f"bulkhead max_queue must be >= 0, not {max_queue}")
        if max_queue and not max_wait > 0:
            raise ValueError(f"bulkhead max_wait must be positive seconds when there is a queue, not {max_wait!r}")
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self.max_wait = max_wait
        self.active = 0
        self.rejected = 0
        self.timed_out = 0
        self._queue: OrderedDict[int, float] = OrderedDict()  # ticket → deadline, oldest first
        self._seq = 0
        # tickets `enter`/`leave` dropped as timed out, until `take_dropped` (only with keep_dropped)
        self.dropped: list[int] | None = [] if keep_dropped else None

    def enter(self, now: float) -> tuple[Admission, int]:
        """Ask for a slot at `now`: (RUN, 0), (WAIT, ticket) or (REJECT, 0)."""
        if self.active < self.max_concurrent and not self._queue:
            self.active += 1
            return Admission.RUN, 0
        if self._queue:
            gone = self.expire(now)
            if gone and self.dropped is not None:
                self.dropped.extend(gone)
            if self.active < self.max_concurrent and not self._queue:
                self.active += 1
                return Admission.RUN, 0
        if len(self._queue) < self.max_queue:
            self._seq += 1
            self._queue[self._seq] = now + self.max_wait
            return Admission.WAIT, self._seq
        self.rejected += 1
        return Admission.REJECT, 0

    def leave(self, now: float) -> int | None:
        """A running call ended at `now`: returns the ticket its slot passes to, or None if the slot is freed."""
        if self.active < 1:
            raise ValueError("bulkhead: leave() without a running call")
        queue = self._queue
        while queue:
            ticket, deadline = queue.popitem(last=False)
            if now < deadline:
                return ticket  # the slot changes hands: active stays the same
            self.timed_out += 1
            if self.dropped is not None:
                self.dropped.append(ticket)
        self.active -= 1
        return None

    def expire(self, now: float) -> list[int]:
        """Drop the waiters whose deadline has passed by `now`; returns their tickets, oldest first."""
        queue = self._queue
        gone: list[int] = []
        while queue:
            ticket, deadline = next(iter(queue.items()))
            if now < deadline:
                break
            del queue[ticket]
            gone.append(ticket)
        self.timed_out += len(gone)
        return gone

    def take_dropped(self) -> list[int]:
        """The tickets `enter`/`leave` dropped as timed out since the last call (oldest first); empties the list."""
        dropped = self.dropped
        if not dropped:
            return []
        self.dropped = []
        return dropped

    def cancel(self, ticket: int) -> bool:
        """The waiter `ticket` gives up: True if it was still queued (now removed), False if it was not."""
        return self._queue.pop(ticket, None) is not None

    def next_deadline(self) -> float | None:
        """The deadline of the oldest waiter, when `expire` next has work; None with an empty queue."""
        for deadline in self._queue.values():
            return deadline
        return None

    @property
    def waiting(self) -> int:
        return len(self._queue)
