"""Lifecycle of one supervised slot (one instance position of a service on an agent).

Theory of operation
-------------------
A slot runs one process at a time and survives its crashes. State: event → next state.

    NEW       spawned → PENDING    failed → BACKOFF     stop → STOPPED (nothing runs yet)
    PENDING   ready → READY        unready → PENDING    exited → BACKOFF    stop → STOPPING
    READY     unready → PENDING    ready → READY        exited → BACKOFF    stop → STOPPING
    BACKOFF   spawned → PENDING    failed → BACKOFF     stop → STOPPED (nothing runs, nothing to drain)
    STOPPING  stopped → STOPPED    spawned → PENDING    failed → BACKOFF (a replacement: new spec, same slot)
    STOPPED   terminal

PENDING means a process runs but is not in rotation yet (critical); READY means it is passing or warning.
`exited` is an exit the agent did not ask for (a crash); an exit during STOPPING is `stopped`; `failed` is a
process that could not be started at all (it counts as a crash). Events that the
table does not allow raise `IllegalTransition` and change nothing, so a shell bug shows up at once.
"""

from __future__ import annotations

import enum

__all__ = ["Event", "IllegalTransition", "Lifecycle", "SlotState"]


class SlotState(enum.Enum):
    NEW = "new"
    PENDING = "pending"
    READY = "ready"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Event(enum.Enum):
    SPAWNED = "spawned"
    READY = "ready"
    UNREADY = "unready"
    EXITED = "exited"
    STOP = "stop"
    STOPPED = "stopped"
    FAILED = "failed"


_TRANSITIONS: dict[tuple[SlotState, Event], SlotState] = {
    (SlotState.NEW, Event.SPAWNED): SlotState.PENDING,
    (SlotState.NEW, Event.STOP): SlotState.STOPPED,
    (SlotState.NEW, Event.FAILED): SlotState.BACKOFF,
    (SlotState.PENDING, Event.READY): SlotState.READY,
    (SlotState.PENDING, Event.UNREADY): SlotState.PENDING,
    (SlotState.PENDING, Event.EXITED): SlotState.BACKOFF,
    (SlotState.PENDING, Event.STOP): SlotState.STOPPING,
    (SlotState.READY, Event.READY): SlotState.READY,
    (SlotState.READY, Event.UNREADY): SlotState.PENDING,
    (SlotState.READY, Event.EXITED): SlotState.BACKOFF,
    (SlotState.READY, Event.STOP): SlotState.STOPPING,
    (SlotState.BACKOFF, Event.SPAWNED): SlotState.PENDING,
    (SlotState.BACKOFF, Event.STOP): SlotState.STOPPED,
    (SlotState.BACKOFF, Event.FAILED): SlotState.BACKOFF,
    (SlotState.STOPPING, Event.STOPPED): SlotState.STOPPED,
    (SlotState.STOPPING, Event.SPAWNED): SlotState.PENDING,
    (SlotState.STOPPING, Event.FAILED): SlotState.BACKOFF,
}


class IllegalTransition(Exception):
    """An event arrived that the slot's current state does not allow."""

    def __init__(self, state: SlotState, event: Event) -> None:
        super().__init__(f"slot in state {state.value!r} cannot take event {event.value!r}")
        self.state, self.event = state, event


class Lifecycle:
    """The state of one slot; `fire(event)` moves it by the transition table."""

    def __init__(self, state: SlotState = SlotState.NEW) -> None:
        self.state = state

    def can(self, event: Event) -> bool:
        return (self.state, event) in _TRANSITIONS

    def fire(self, event: Event) -> SlotState:
        """Apply `event`; returns the new state. Raises IllegalTransition (state unchanged) if not allowed."""
        try:
            self.state = _TRANSITIONS[(self.state, event)]
        except KeyError:
            raise IllegalTransition(self.state, event) from None
        return self.state

    @property
    def serving(self) -> bool:
        return self.state is SlotState.READY

    @property
    def done(self) -> bool:
        return self.state is SlotState.STOPPED
