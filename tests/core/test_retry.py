"""The failover decision: when a failed try is retried, where, and when the client gets an error."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jishi.core.retry import Action, Attempt, Failure, RetryOn, RetryRules, decide, fallback


def attempt(**kw: object) -> Attempt:
    base: dict[str, object] = dict(
        failure=Failure.LOST, response_started=False, got_bytes=False, reused=False, idempotent=True,
        replayable=True, stale_retried=False, tries=1, retries=2,
    )  # fmt: skip
    base.update(kw)
    return Attempt(**base)  # type: ignore[arg-type]


def test_connect_failure_retries_elsewhere_for_any_method_until_tries_run_out() -> None:
    """A refused connect goes to another peer even for POST; after 1 + retries tries it gives up."""
    assert decide(attempt(failure=Failure.CONNECT, idempotent=False, replayable=False)) is Action.RETRY_OTHER
    assert decide(attempt(failure=Failure.CONNECT, tries=3, retries=2)) is Action.GIVE_UP


def test_stale_pooled_connection_is_retried_once_on_a_fresh_connection() -> None:
    """A reused connection lost before any byte → same peer, fresh connection; the second time → another peer."""
    assert decide(attempt(reused=True)) is Action.RETRY_FRESH
    assert decide(attempt(reused=True, stale_retried=True)) is Action.RETRY_OTHER


def test_lost_connection_retry_needs_idempotent_replayable_and_no_response_byte() -> None:
    """POST, an unkept body, or a started response are never resent: the client gets an error instead."""
    assert decide(attempt()) is Action.RETRY_OTHER
    assert decide(attempt(idempotent=False)) is Action.FAIL
    assert decide(attempt(replayable=False)) is Action.FAIL
    assert decide(attempt(got_bytes=True)) is Action.FAIL
    assert decide(attempt(tries=3)) is Action.GIVE_UP


def test_timeouts_and_protocol_errors_are_answered_not_retried() -> None:
    """A read timeout or a non-HTTP answer fails the request at once."""
    assert decide(attempt(failure=Failure.TIMEOUT)) is Action.FAIL
    assert decide(attempt(failure=Failure.PROTOCOL)) is Action.FAIL


@given(
    st.sampled_from(list(Failure)), st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.booleans(),
    st.integers(1, 5), st.integers(0, 4),
)  # fmt: skip
def test_invariants(
    failure: Failure, started: bool, got: bool, reused: bool, idem: bool, stale: bool, tries: int, retries: int
) -> None:
    """A started response always aborts; a non-idempotent request is resent only if its connect failed;
    no retry beyond 1 + retries tries except the one uncounted fresh-connection retry."""
    a = attempt(failure=failure, response_started=started, got_bytes=got, reused=reused, idempotent=idem,
                stale_retried=stale, tries=tries, retries=retries)  # fmt: skip
    action = decide(a)
    if started:
        assert action is Action.ABORT
    if not idem and failure is not Failure.CONNECT:
        assert action not in (Action.RETRY_OTHER, Action.RETRY_FRESH)
    if action is Action.RETRY_OTHER:
        assert tries <= retries
    if action is Action.RETRY_FRESH:
        assert reused and not stale


def test_retry_on_names_parse_to_flags_and_match_statuses() -> None:
    """`on` names become flags; 5xx matches every 5xx, 503 only 503, and nothing below 500 is a retry status."""
    on = RetryOn.parse(["connect_failure", "503"])
    assert on == RetryOn.CONNECT_FAILURE | RetryOn.S503
    assert on.status(503) and not on.status(502) and not on.status(500)
    assert RetryOn.parse(["5xx"]).status(500) and RetryOn.parse(["5xx"]).status(599)
    assert not RetryOn.parse(["5xx"]).status(404)
    with pytest.raises(ValueError, match="unknown retry condition 'teapot'"):
        RetryOn.parse(["teapot"])


def test_timeout_is_retried_only_when_the_route_asks_and_the_request_may_be_resent() -> None:
    """A per-try timeout goes elsewhere with `timeout` in `on`, never for POST without the opt-in."""
    on = RetryOn.parse(["timeout"])
    assert decide(attempt(failure=Failure.TIMEOUT, retry_on=on)) is Action.RETRY_OTHER
    assert decide(attempt(failure=Failure.TIMEOUT, retry_on=on, tries=3)) is Action.GIVE_UP
    assert decide(attempt(failure=Failure.TIMEOUT, retry_on=on, idempotent=False)) is Action.FAIL
    assert decide(attempt(failure=Failure.TIMEOUT, retry_on=on, idempotent=False, non_idempotent=True)) is (
        Action.RETRY_OTHER
    )


def test_status_failure_retries_or_relays_the_answer() -> None:
    """A retried status goes elsewhere while tries remain; otherwise the instance's answer is relayed."""
    on = RetryOn.parse(["503"])
    assert decide(attempt(failure=Failure.STATUS, status=503, retry_on=on)) is Action.RETRY_OTHER
    assert decide(attempt(failure=Failure.STATUS, status=500, retry_on=on)) is Action.RELAY
    assert decide(attempt(failure=Failure.STATUS, status=503, retry_on=on, tries=3)) is Action.RELAY
    assert decide(attempt(failure=Failure.STATUS, status=503, retry_on=on, idempotent=False)) is Action.RELAY
    assert decide(attempt(failure=Failure.STATUS, status=503, retry_on=on, replayable=False)) is Action.RELAY
    assert fallback(Failure.STATUS) is Action.RELAY and fallback(Failure.LOST) is Action.GIVE_UP


def test_reset_is_not_retried_elsewhere_when_the_route_leaves_it_out() -> None:
    """Without `reset` a lost connection fails at once (a stale pooled one still gets its fresh retry)."""
    on = RetryOn.parse(["connect_failure"])
    assert decide(attempt(retry_on=on)) is Action.FAIL
    assert decide(attempt(retry_on=on, reused=True)) is Action.RETRY_FRESH
    assert decide(attempt(failure=Failure.CONNECT, retry_on=RetryOn.parse(["reset"]))) is Action.FAIL


def test_backoff_is_full_jitter_below_a_doubling_capped_ceiling() -> None:
    """Retry n waits uniformly in [0, min(max, base·2^(n-1))); base 0 means no wait."""
    rules = RetryRules(backoff_base=0.01, backoff_max=0.05)
    rng = random.Random(7)
    for n, ceiling in ((1, 0.01), (2, 0.02), (3, 0.04), (4, 0.05), (9, 0.05)):
        waits = [rules.backoff(n, rng) for _ in range(300)]
        assert min(waits) >= 0 and max(waits) < ceiling
        assert max(waits) > ceiling * 0.9  # the whole range is used
    assert RetryRules().backoff(3, rng) == 0.0


def test_rules_from_a_retry_section() -> None:
    """The jishi.yaml retry section maps onto the rules the gateway reads."""
    from jishi.registry.policies import RetryPolicy

    rules = RetryRules.from_policy(RetryPolicy(attempts=3, on=["5xx", "timeout"], per_try_timeout="250ms"))
    assert rules.attempts == 3 and rules.per_try_timeout == 0.25 and rules.on_status
    assert rules.on == RetryOn.S5XX | RetryOn.TIMEOUT
    assert not RetryRules().on_status
