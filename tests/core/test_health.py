"""Health state machine: starts critical, rise/fall debounce, warning, transitions reported only on change."""

from __future__ import annotations

import pytest

from jishi.core.health import HealthMachine, Outcome, State, Transition
from jishi.registry.model import HealthCheckSpec


def test_starts_critical() -> None:
    """A new instance is critical until checks pass."""
    assert HealthMachine(1, 1).state is State.CRITICAL


def test_rise_consecutive_passes_make_it_passing() -> None:
    """With rise=3 the third consecutive pass moves critical → passing, and only that step reports it."""
    m = HealthMachine(rise=3, fall=2)
    assert m.observe(Outcome.PASS, 1.0) is None
    assert m.observe(Outcome.PASS, 2.0) is None
    assert m.observe(Outcome.PASS, 3.0, "200 OK") == Transition(State.CRITICAL, State.PASSING, "200 OK", 3.0)
    assert m.observe(Outcome.PASS, 4.0) is None
    assert m.state is State.PASSING


def test_a_failure_restarts_the_rise_count() -> None:
    """pass, pass, fail, pass, pass stays critical with rise=3; one more pass makes it passing."""
    m = HealthMachine(rise=3, fall=1)
    for outcome in (Outcome.PASS, Outcome.PASS, Outcome.FAIL, Outcome.PASS, Outcome.PASS):
        assert m.observe(outcome, 0.0) is None
    assert m.state is State.CRITICAL
    assert m.observe(Outcome.PASS, 1.0) is not None


def test_fall_consecutive_failures_make_it_critical() -> None:
    """With fall=2 one failure is tolerated; the second consecutive one reports passing → critical."""
    m = HealthMachine(rise=1, fall=2)
    m.observe(Outcome.PASS, 0.0)
    assert m.observe(Outcome.FAIL, 1.0) is None
    assert m.observe(Outcome.PASS, 2.0) is None
    assert m.observe(Outcome.FAIL, 3.0) is None
    t = m.observe(Outcome.FAIL, 4.0, "connection refused")
    assert t == Transition(State.PASSING, State.CRITICAL, "connection refused", 4.0)


def test_warning_counts_towards_rise_and_is_reported_without_debounce() -> None:
    """A warn result rises like a pass (to WARNING); warn ↔ pass switch at once; both are in rotation."""
    m = HealthMachine(rise=2, fall=2)
    assert m.observe(Outcome.WARN, 0.0) is None
    t = m.observe(Outcome.WARN, 1.0)
    assert t is not None and t.new is State.WARNING
    assert m.in_rotation
    t = m.observe(Outcome.PASS, 2.0)
    assert t is not None and (t.old, t.new) == (State.WARNING, State.PASSING)
    t = m.observe(Outcome.WARN, 3.0)
    assert t is not None and t.new is State.WARNING


def test_from_spec_reads_rise_and_fall() -> None:
    """The machine takes its thresholds from a HealthCheckSpec."""
    m = HealthMachine.from_spec(HealthCheckSpec(rise=2, fall=5))
    assert (m.rise, m.fall) == (2, 5)


def test_thresholds_below_one_are_refused() -> None:
    """rise or fall of 0 is a programming error and raises."""
    with pytest.raises(ValueError, match="at least 1"):
        HealthMachine(0, 1)


def test_retuned_keeps_the_state_and_applies_the_new_thresholds() -> None:
    """New rise/fall on a passing instance: still passing, and the new fall decides when it goes critical."""
    m = HealthMachine(rise=1, fall=5)
    m.observe(Outcome.PASS, 1.0)
    assert m.state is State.PASSING
    m.observe(Outcome.FAIL, 2.0)
    tuned = m.retuned(HealthCheckSpec(rise=3, fall=2))
    assert (tuned.state, tuned.rise, tuned.fall, tuned.since) == (State.PASSING, 3, 2, 1.0)
    t = tuned.observe(Outcome.FAIL, 3.0)  # the second failure in a row: fall=2 is met
    assert t is not None and t.new is State.CRITICAL
    assert tuned.observe(Outcome.PASS, 4.0) is None
    assert tuned.observe(Outcome.PASS, 5.0) is None
    t = tuned.observe(Outcome.PASS, 6.0)  # rise=3
    assert t is not None and t.new is State.PASSING
