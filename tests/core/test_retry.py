"""The failover decision: when a failed try is retried, where, and when the client gets an error."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jishi.core.retry import Action, Attempt, Failure, decide


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
