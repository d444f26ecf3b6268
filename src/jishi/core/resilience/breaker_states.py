"""The circuit breaker's states, its triggers and the transition table between them.

Theory of operation
-------------------
The table is the whole state machine: (state, trigger) → next state. Automatic triggers come from calls and
time (TRIP, WAIT_ELAPSED, PROBES_PASSED, PROBES_FAILED, HALF_OPEN_TIMEOUT); the operator's (CLOSE, OPEN,
DISABLE, FORCE_OPEN, METRICS_ONLY) are allowed from every state, and HALF_OPEN only from OPEN. A pair missing
from the table raises `IllegalTransition`, and the breaker does not change. Each transition that happens is
reported as a `StateChange(old, new, at, reason)`.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

__all__ = ["TRANSITIONS", "BreakerState", "BreakerTrigger", "IllegalTransition", "StateChange"]


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    DISABLED = "disabled"
    FORCED_OPEN = "forced_open"
    METRICS_ONLY = "metrics_only"


class BreakerTrigger(enum.Enum):
    TRIP = "trip"  # thresholds exceeded in CLOSED
    WAIT_ELAPSED = "wait_elapsed"  # the OPEN wait is over
    PROBES_PASSED = "probes_passed"  # half-open calls under the thresholds
    PROBES_FAILED = "probes_failed"  # half-open calls over a threshold
    HALF_OPEN_TIMEOUT = "half_open_timeout"  # half-open calls did not all report in time
    # operator actions
    CLOSE = "close"
    OPEN = "open"
    HALF_OPEN = "half_open"
    DISABLE = "disable"
    FORCE_OPEN = "force_open"
    METRICS_ONLY = "metrics_only"


_S, _T = BreakerState, BreakerTrigger
TRANSITIONS: dict[tuple[BreakerState, BreakerTrigger], BreakerState] = {
    (_S.CLOSED, _T.TRIP): _S.OPEN,
    (_S.OPEN, _T.WAIT_ELAPSED): _S.HALF_OPEN,
    (_S.HALF_OPEN, _T.PROBES_PASSED): _S.CLOSED,
    (_S.HALF_OPEN, _T.PROBES_FAILED): _S.OPEN,
    (_S.HALF_OPEN, _T.HALF_OPEN_TIMEOUT): _S.OPEN,
    (_S.OPEN, _T.HALF_OPEN): _S.HALF_OPEN,
}
for _state in BreakerState:  # the operator may move any state to these (re-entering one resets it)
    TRANSITIONS[(_state, _T.CLOSE)] = _S.CLOSED
    TRANSITIONS[(_state, _T.OPEN)] = _S.OPEN
    TRANSITIONS[(_state, _T.DISABLE)] = _S.DISABLED
    TRANSITIONS[(_state, _T.FORCE_OPEN)] = _S.FORCED_OPEN
    TRANSITIONS[(_state, _T.METRICS_ONLY)] = _S.METRICS_ONLY


class IllegalTransition(Exception):
    """A trigger arrived that the breaker's current state does not allow."""

    def __init__(self, state: BreakerState, trigger: BreakerTrigger) -> None:
        super().__init__(f"circuit breaker in state {state.value!r} cannot take {trigger.value!r}")
        self.state, self.trigger = state, trigger


class StateChange(NamedTuple):
    old: BreakerState
    new: BreakerState
    at: float
    reason: str
