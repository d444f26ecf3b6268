"""Bulkhead: admit, queue, reject, hand-over of slots to waiters, and queue deadlines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jishi.core.resilience import Admission, Bulkhead

RUN, WAIT, REJECT = Admission.RUN, Admission.WAIT, Admission.REJECT


def test_runs_up_to_the_limit_then_queues_then_rejects() -> None:
    """2 slots, queue of 1: two run, one waits with a ticket, the fourth is rejected."""
    b = Bulkhead(2, max_queue=1, max_wait=5.0)
    assert [b.enter(0.0) for _ in range(4)] == [(RUN, 0), (RUN, 0), (WAIT, 1), (REJECT, 0)]
    assert (b.active, b.waiting, b.rejected) == (2, 1, 1)
    assert b.next_deadline() == 5.0


def test_leave_hands_the_slot_to_the_oldest_waiter() -> None:
    """A finished call passes its slot to the first waiter (FIFO); with no waiter the slot is freed."""
    b = Bulkhead(1, max_queue=2, max_wait=5.0)
    b.enter(0.0)
    _, t1 = b.enter(0.0)
    _, t2 = b.enter(1.0)
    assert b.leave(2.0) == t1
    assert b.active == 1
    assert b.leave(3.0) == t2
    assert b.leave(4.0) is None
    assert b.active == 0


def test_waiters_past_their_deadline_are_skipped_and_counted() -> None:
    """At t=5.5 the waiter queued at 0 (deadline 5) is dropped; the one queued at 1 gets the slot."""
    b = Bulkhead(1, max_queue=2, max_wait=5.0)
    b.enter(0.0)
    b.enter(0.0)
    _, t2 = b.enter(1.0)
    assert b.leave(5.5) == t2
    assert b.timed_out == 1


def test_expire_returns_timed_out_tickets_at_their_deadline() -> None:
    """expire(now) drops exactly the waiters whose deadline is ≤ now, oldest first."""
    b = Bulkhead(1, max_queue=3, max_wait=2.0)
    b.enter(0.0)
    tickets = [b.enter(t)[1] for t in (0.0, 1.0, 1.5)]
    assert b.expire(1.999) == []
    assert b.expire(3.0) == tickets[:2]
    assert b.next_deadline() == 3.5
    assert b.timed_out == 2


def test_cancel_tells_whether_the_waiter_was_still_queued() -> None:
    """A waiter that gives up is removed (True); one that had already been handed a slot is not (False)."""
    b = Bulkhead(1, max_queue=2, max_wait=5.0)
    b.enter(0.0)
    _, t1 = b.enter(0.0)
    _, t2 = b.enter(0.0)
    assert b.cancel(t2) is True
    assert b.leave(1.0) == t1
    assert b.cancel(t1) is False


def test_a_freed_slot_goes_to_the_queue_before_a_newcomer() -> None:
    """While waiters are queued, a newcomer waits too even if it arrives as a slot frees (no barging)."""
    b = Bulkhead(1, max_queue=2, max_wait=5.0)
    b.enter(0.0)
    b.enter(0.0)
    assert b.enter(0.5)[0] is WAIT


def test_no_queue_rejects_at_once_and_leave_without_a_call_raises() -> None:
    """max_queue 0 rejects when full; leave() with nothing running is a caller bug."""
    b = Bulkhead(1)
    assert b.enter(0.0) == (RUN, 0)
    assert b.enter(0.0) == (REJECT, 0)
    b.leave(0.0)
    with pytest.raises(ValueError, match="leave\\(\\) without a running call"):
        b.leave(0.0)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(0, 4), st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=80))
def test_never_more_than_max_concurrent_or_max_queue(limit: int, queue: int, ops: list[tuple[bool, int]]) -> None:
    """Any sequence of enters and leaves keeps active ≤ max_concurrent and waiting ≤ max_queue."""
    b = Bulkhead(limit, max_queue=queue, max_wait=2.0)
    now = 0.0
    for enter, step in ops:
        now += step
        if enter:
            b.enter(now)
        elif b.active:
            b.leave(now)
        assert 0 <= b.active <= limit
        assert b.waiting <= queue


def test_keep_dropped_collects_waiters_enter_and_leave_skip() -> None:
    """With keep_dropped, tickets that enter()/leave() drop as timed out are kept for take_dropped(), once."""
    b = Bulkhead(1, max_queue=3, max_wait=1.0, keep_dropped=True)
    b.enter(0.0)
    _, t1 = b.enter(0.0)
    _, t2 = b.enter(0.5)
    assert b.enter(1.2)[0] is Admission.WAIT  # t1 (deadline 1.0) dropped on the way
    assert b.take_dropped() == [t1]
    assert b.leave(1.6) not in (t1, t2)  # t2 (deadline 1.5) dropped, the newest waiter gets the slot
    assert b.take_dropped() == [t2]
    assert b.take_dropped() == []
    assert b.timed_out == 2
