"""The pure parts: the Redis connection's circuit (exact times) and a limit's local share per worker."""

from __future__ import annotations

import pytest

from jishi.core.resilience import GCRA, SlidingWindowCounter, TokenBucket
from jishi.ratelimit import Limit, Link, LinkState


def test_link_goes_down_on_failure_and_probes_after_the_cooldown() -> None:
    """A failure takes the link DOWN for exactly the cool-down; then one call probes, the others stay local."""
    link = Link(cooldown=0.5)
    assert link.ask(10.0)
    assert link.failed(10.0) is True
    assert link.state is LinkState.DOWN
    assert not link.ask(10.499)
    assert link.ask(10.5) and link.state is LinkState.PROBING
    assert not link.ask(10.6)  # the probe is in flight
    assert link.succeeded(probe=True) is True
    assert link.state is LinkState.UP and link.ask(10.7)


def test_failed_probe_starts_another_cooldown() -> None:
    """A probe that fails keeps the link DOWN for another full cool-down from the failure."""
    link = Link(cooldown=1.0)
    link.failed(0.0)
    assert link.ask(1.0)
    assert link.failed(1.2) is False  # not a new fallback: it was not UP
    assert not link.ask(2.1)
    assert link.ask(2.2)


def test_success_of_a_call_from_before_the_failure_does_not_bring_the_link_back() -> None:
    """Only the probe reopens the link: a late success of a call sent while UP leaves it DOWN."""
    link = Link(cooldown=1.0)
    assert link.ask(0.0)  # call A starts
    link.failed(0.1)  # call B fails
    assert link.succeeded(probe=False) is False  # call A answers late
    assert link.state is LinkState.DOWN


def test_cancelled_probe_lets_the_next_call_probe() -> None:
    """A probe that never answers (cancelled) does not leave the link stuck in PROBING."""
    link = Link(cooldown=5.0)
    link.failed(0.0)
    assert link.ask(5.0)
    link.abandoned()
    assert link.state is LinkState.DOWN and link.ask(5.001)


def test_link_refuses_a_negative_cooldown() -> None:
    """A negative cool-down is a configuration error with a message naming it."""
    with pytest.raises(ValueError, match="cooldown"):
        Link(cooldown=-1)


def test_local_share_divides_rate_and_burst_by_workers() -> None:
    """The fallback limiter of each kind gets 1/workers of the global rate and burst, same algorithm."""
    gcra = Limit.gcra(100, max_burst=39).local(4)
    assert isinstance(gcra, GCRA) and gcra.rate == 25 and gcra.max_burst == 9
    bucket = Limit.token_bucket(10, burst=30).local(3)
    assert isinstance(bucket, TokenBucket) and bucket.rate == pytest.approx(10 / 3) and bucket.burst == 10
    window = Limit.sliding_window(100, 60).local(8)
    assert isinstance(window, SlidingWindowCounter) and window.limit == 12 and window.window == 60


def test_local_share_never_drops_below_one_permit() -> None:
    """With more workers than the burst, each worker's fallback still admits one request."""
    assert Limit.gcra(1, max_burst=0).local(5).try_acquire(0.0) == (True, 0.0)
    assert Limit.token_bucket(1, burst=2).local(5).try_acquire(0.0) == (True, 0.0)
    assert Limit.sliding_window(3, 1).local(5).try_acquire(0.0) == (True, 0.0)


def test_limits_validate_with_the_core_messages() -> None:
    """Bad parameters are refused when the limit is built, with the core limiters' messages."""
    with pytest.raises(ValueError, match="rate"):
        Limit.gcra(0)
    with pytest.raises(ValueError, match="burst"):
        Limit.token_bucket(1, burst=0)
    with pytest.raises(ValueError, match="limit"):
        Limit.sliding_window(0, 1)
    with pytest.raises(ValueError, match="workers"):
        Limit.gcra(1).local(0)
