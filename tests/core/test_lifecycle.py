"""Slot lifecycle: the transition table, and illegal events that raise and change nothing."""

from __future__ import annotations

import pytest

from jishi.core.lifecycle import Event, IllegalTransition, Lifecycle, SlotState


def test_crash_and_restart_cycle() -> None:
    """spawned → ready → exited → spawned goes NEW → PENDING → READY → BACKOFF → PENDING."""
    lc = Lifecycle()
    states = [lc.fire(e) for e in (Event.SPAWNED, Event.READY, Event.EXITED, Event.SPAWNED)]
    assert states == [SlotState.PENDING, SlotState.READY, SlotState.BACKOFF, SlotState.PENDING]


def test_graceful_stop_and_replacement() -> None:
    """stop → STOPPING; a replacement spawns from STOPPING; a final stop ends in STOPPED."""
    lc = Lifecycle()
    lc.fire(Event.SPAWNED)
    assert lc.fire(Event.STOP) is SlotState.STOPPING
    assert lc.fire(Event.SPAWNED) is SlotState.PENDING
    lc.fire(Event.STOP)
    assert lc.fire(Event.STOPPED) is SlotState.STOPPED
    assert lc.done


def test_illegal_event_raises_and_leaves_the_state() -> None:
    """A crash report for a slot that is not running is refused and the state stays as it was."""
    lc = Lifecycle(SlotState.BACKOFF)
    with pytest.raises(IllegalTransition, match="'backoff' cannot take event 'exited'"):
        lc.fire(Event.EXITED)
    assert lc.state is SlotState.BACKOFF
    assert not lc.can(Event.READY)


def test_stopped_is_terminal() -> None:
    """No event leaves STOPPED."""
    lc = Lifecycle(SlotState.STOPPED)
    assert not any(lc.can(e) for e in Event)


def test_a_process_that_cannot_start_backs_off() -> None:
    """failed (spawn error) leads from NEW, BACKOFF or a replacement's STOPPING to BACKOFF."""
    for start in (SlotState.NEW, SlotState.BACKOFF, SlotState.STOPPING):
        assert Lifecycle(start).fire(Event.FAILED) is SlotState.BACKOFF
