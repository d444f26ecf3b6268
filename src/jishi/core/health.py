"""Health state of one instance: raw check results in, debounced state transitions out.

Theory of operation
-------------------
An instance starts CRITICAL. Each check yields one `Outcome`: PASS, WARN (the instance answers but asks for
relief, e.g. HTTP 429) or FAIL. Results are debounced with two thresholds from the health-check spec:

- `rise` consecutive non-failing results (PASS or WARN) take a CRITICAL instance to PASSING or WARNING
  (whichever the latest result says);
- `fall` consecutive failures take a PASSING or WARNING instance to CRITICAL;
- between PASSING and WARNING there is no debounce: both keep the instance in rotation, so the latest result
  is simply reported.

The transitions are the table `_TABLE`: (state, outcome) → (next state, threshold that must be met). A step
returns a `Transition(old, new)` only when the state changes, so the shell writes to the control plane only
then.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

__all__ = ["HealthMachine", "HealthSpec", "Outcome", "State", "Transition"]


class State(enum.StrEnum):
    """Same values as `jishi.registry.model.Health`, so the shell converts with `Health(state.value)`."""

    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"


class Outcome(enum.Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


class _Gate(enum.Enum):
    NONE = "none"  # move at once
    RISE = "rise"  # only after `rise` consecutive non-failing results
    FALL = "fall"  # only after `fall` consecutive failures


_TABLE: dict[tuple[State, Outcome], tuple[State, _Gate]] = {
    (State.CRITICAL, Outcome.PASS): (State.PASSING, _Gate.RISE),
    (State.CRITICAL, Outcome.WARN): (State.WARNING, _Gate.RISE),
    (State.CRITICAL, Outcome.FAIL): (State.CRITICAL, _Gate.NONE),
    (State.PASSING, Outcome.PASS): (State.PASSING, _Gate.NONE),
    (State.PASSING, Outcome.WARN): (State.WARNING, _Gate.NONE),
    (State.PASSING, Outcome.FAIL): (State.CRITICAL, _Gate.FALL),
    (State.WARNING, Outcome.PASS): (State.PASSING, _Gate.NONE),
    (State.WARNING, Outcome.WARN): (State.WARNING, _Gate.NONE),
    (State.WARNING, Outcome.FAIL): (State.CRITICAL, _Gate.FALL),
}


class HealthSpec(Protocol):
    """The fields of `jishi.registry.model.HealthCheckSpec` this module reads."""

    @property
    def rise(self) -> int: ...
    @property
    def fall(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Transition:
    old: State
    new: State
    output: str  # the message of the check that caused it
    at: float


class HealthMachine:
    """Debounces check outcomes of one instance (one process life) into PASSING / WARNING / CRITICAL."""

    def __init__(self, rise: int, fall: int) -> None:
        if rise < 1 or fall < 1:
            raise ValueError(f"rise and fall must be at least 1 (got rise={rise}, fall={fall})")
        self.rise, self.fall = rise, fall
        self.state = State.CRITICAL
        self.oks = 0  # consecutive PASS/WARN results
        self.fails = 0  # consecutive FAIL results
        self.since: float | None = None  # time of the last transition (None: never changed)

    @classmethod
    def from_spec(cls, spec: HealthSpec) -> HealthMachine:
        return cls(spec.rise, spec.fall)

    def retuned(self, spec: HealthSpec) -> HealthMachine:
        """A machine with the thresholds of `spec` that keeps this one's state, streaks and last transition."""
        machine = HealthMachine.from_spec(spec)
        machine.state, machine.oks, machine.fails, machine.since = self.state, self.oks, self.fails, self.since
        return machine

    def observe(self, outcome: Outcome, now: float, output: str = "") -> Transition | None:
        """Record one check result taken at `now`; returns the transition it caused, if any."""
        if outcome is Outcome.FAIL:
            self.fails, self.oks = self.fails + 1, 0
        else:
            self.oks, self.fails = self.oks + 1, 0
        target, gate = _TABLE[(self.state, outcome)]
        if target is self.state:
            return None
        if gate is _Gate.RISE and self.oks < self.rise:
            return None
        if gate is _Gate.FALL and self.fails < self.fall:
            return None
        old, self.state, self.since = self.state, target, now
        return Transition(old, target, output, now)

    @property
    def in_rotation(self) -> bool:
        return self.state is not State.CRITICAL
