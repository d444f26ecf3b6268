"""Restart backoff: exact delays for a seeded rng, the cap, the reset after a healthy period, no FATAL."""

from __future__ import annotations

import random

import pytest

from jishi.core.backoff import RestartBackoff
from jishi.registry.model import RestartPolicy

NO_JITTER = RestartPolicy(initial_delay=0.2, max_delay=5.0, multiplier=2.0, reset_after=10.0, jitter=0.0)


def _delays(backoff: RestartBackoff, n: int, rng: random.Random, now: float = 0.0) -> list[float]:
    return [backoff.crashed(now, rng) for _ in range(n)]


def test_delays_double_from_initial_delay_up_to_the_cap() -> None:
    """Without jitter, consecutive crashes wait 0.2, 0.4, 0.8, 1.6, 3.2 then stay at the 5.0 cap."""
    delays = _delays(RestartBackoff(NO_JITTER), 8, random.Random(1))
    assert delays == pytest.approx([0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0])


def test_jitter_matches_the_seeded_rng_and_stays_within_bounds() -> None:
    """With 10 % jitter each delay is base × (1 + 0.1·u), u drawn from the given rng, and never above the cap."""
    policy = RestartPolicy(initial_delay=1.0, max_delay=4.0, multiplier=2.0, reset_after=10.0, jitter=0.1)
    delays = _delays(RestartBackoff(policy), 6, random.Random(42))
    ref = random.Random(42)
    expected = [min(4.0, base * (1 + 0.1 * ref.uniform(-1, 1))) for base in (1.0, 2.0, 4.0, 4.0, 4.0, 4.0)]
    assert delays == pytest.approx(expected)
    assert all(0.9 * b <= d <= min(4.0, 1.1 * b) for d, b in zip(delays, (1.0, 2.0, 4.0, 4.0, 4.0, 4.0), strict=True))


def test_never_gives_up_even_after_thousands_of_crashes() -> None:
    """A crash loop keeps getting finite delays at the cap: there is no terminal FATAL state and no overflow."""
    backoff = RestartBackoff(NO_JITTER)
    delays = _delays(backoff, 5000, random.Random(0))
    assert delays[-1] == 5.0
    assert backoff.crashes == 5000


def test_healthy_for_reset_after_restores_the_initial_delay() -> None:
    """After staying healthy for reset_after seconds, the next crash restarts after initial_delay again."""
    backoff = RestartBackoff(NO_JITTER)
    rng = random.Random(0)
    _delays(backoff, 4, rng, now=100.0)
    backoff.healthy(101.0)
    assert backoff.crashed(111.0, rng) == pytest.approx(0.2)
    assert backoff.crashed(112.0, rng) == pytest.approx(0.4)


def test_a_short_healthy_stretch_does_not_reset() -> None:
    """Healthy for less than reset_after: the delays keep growing."""
    backoff = RestartBackoff(NO_JITTER)
    rng = random.Random(0)
    _delays(backoff, 3, rng)
    backoff.healthy(50.0)
    assert backoff.crashed(59.9, rng) == pytest.approx(1.6)


def test_going_critical_after_a_long_healthy_stretch_keeps_the_reset() -> None:
    """A stretch that reached reset_after still counts if the instance went critical before crashing."""
    backoff = RestartBackoff(NO_JITTER)
    rng = random.Random(0)
    _delays(backoff, 3, rng)
    backoff.healthy(10.0)
    backoff.unhealthy(25.0)
    assert backoff.crashed(40.0, rng) == pytest.approx(0.2)


def test_interrupted_healthy_stretches_do_not_add_up() -> None:
    """Two healthy stretches of 6 s separated by a critical spell do not make the 10 s needed for a reset."""
    backoff = RestartBackoff(NO_JITTER)
    rng = random.Random(0)
    _delays(backoff, 2, rng)
    backoff.healthy(0.0)
    backoff.unhealthy(6.0)
    backoff.healthy(7.0)
    assert backoff.crashed(13.0, rng) == pytest.approx(0.8)


def test_operator_stop_is_not_a_crash() -> None:
    """forget_health() neither counts a crash nor keeps the healthy stretch."""
    backoff = RestartBackoff(NO_JITTER)
    rng = random.Random(0)
    backoff.crashed(0.0, rng)
    backoff.healthy(1.0)
    backoff.forget_health()
    assert backoff.crashes == 1
    assert backoff.healthy_since is None
    assert backoff.crashed(100.0, rng) == pytest.approx(0.4)
