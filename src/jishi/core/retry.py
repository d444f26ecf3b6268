"""What the gateway does after one try of a request failed: the failover rules as one pure decision.

Theory of operation
-------------------
A try fails in one of these ways (`Failure`):

    CONNECT    no connection could be made (refused, unreachable, connect timeout)
    LOST       the connection closed or was reset before the response was complete
    TIMEOUT    the instance sent nothing for the try's read timeout
    PROTOCOL   the instance sent something that is not HTTP
    STATUS     the instance answered with a status the route retries on (502, 503, 504, any 5xx); the
               response head is not relayed yet, so the request can still go elsewhere

What is retried is a set of `RetryOn` flags. A route without a `retry` section has `DEFAULT_ON` (connect
failures and resets, the gateway's long-standing behaviour) and `retries` extra tries; a `retry` section gives
its own flags (`RetryRules.from_policy`), attempts, and may let non-idempotent requests be resent.

The decision (`decide`), in order:

1. Once any of the response went to the client nothing can be redone: ABORT (close the client connection).
2. CONNECT: nothing was sent, so any request may go elsewhere: RETRY_OTHER while tries remain (and
   `connect_failure` is retried), else GIVE_UP (FAIL when connect failures are not retried at all).
3. A request may be *resent* when it is idempotent (or the route opts non-idempotent ones in), its body is
   still kept (≤ 64 KiB), and no response byte arrived on this try.
4. LOST, resendable: on a pooled (reused) connection, the first time, the instance most likely closed an idle
   keep-alive connection: RETRY_FRESH (same peer, new connection, not counted as a try). Otherwise, with
   `reset` retried, RETRY_OTHER while tries remain, else GIVE_UP.
5. TIMEOUT, resendable, with `timeout` retried: RETRY_OTHER while tries remain, else GIVE_UP.
6. STATUS, resendable, status retried: RETRY_OTHER while tries remain, else RELAY (the client gets the answer).
7. Everything else answers the client now: TIMEOUT → 504, LOST/PROTOCOL → 502 (FAIL); STATUS → RELAY.

`tries` counts the tries made so far (1 after the first); `retries` = 2 makes at most 3. A retry budget and the
route's total timeout can still veto a RETRY_OTHER: the shell then turns it into `fallback(failure)`.
Backoff between tries is full jitter (`RetryRules.backoff`): a uniform draw from [0, min(max, base·2^(n-1))).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from jishi.core.lb.peers import Rng

__all__ = ["DEFAULT_ON", "Action", "Attempt", "Failure", "RetryOn", "RetryRules", "decide", "fallback"]


class Failure(enum.Enum):
    CONNECT = "connect"
    LOST = "lost"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"
    STATUS = "status"


class Action(enum.Enum):
    ABORT = "abort"  # the response had started: close the client connection
    RETRY_FRESH = "retry_fresh"  # same peer, new connection, not counted as a try
    RETRY_OTHER = "retry_other"  # mark the peer down, try another one
    GIVE_UP = "give_up"  # mark the peer down; no try left: 502 (504 if the last failure was a timeout)
    FAIL = "fail"  # answer now: 504 for TIMEOUT, 502 otherwise
    RELAY = "relay"  # a STATUS failure that is not retried: the client gets the instance's answer


class RetryOn(enum.IntFlag):
    """What a route retries: the `on` list of its retry section."""

    CONNECT_FAILURE = 1
    RESET = 2
    TIMEOUT = 4
    S502 = 8
    S503 = 16
    S504 = 32
    S5XX = 64

    @classmethod
    def parse(cls, names: Iterable[str]) -> RetryOn:
        """Flags from configuration names: connect_failure, reset, timeout, 502, 503, 504, 5xx."""
        flags = cls(0)
        for name in names:
            flag = _NAMES.get(name)
            if flag is None:
                raise ValueError(f"unknown retry condition {name!r}; choose from: {', '.join(_NAMES)}")
            flags |= flag
        return flags

    def status(self, status: int) -> bool:
        """Is a response with `status` retried?"""
        if status < 500 or status > 599:
            return False
        if self & RetryOn.S5XX:
            return True
        return bool(
            (status == 502 and self & RetryOn.S502)
            or (status == 503 and self & RetryOn.S503)
            or (status == 504 and self & RetryOn.S504)
        )


_NAMES = {
    "connect_failure": RetryOn.CONNECT_FAILURE,
    "reset": RetryOn.RESET,
    "timeout": RetryOn.TIMEOUT,
    "502": RetryOn.S502,
    "503": RetryOn.S503,
    "504": RetryOn.S504,
    "5xx": RetryOn.S5XX,
}
DEFAULT_ON = RetryOn.CONNECT_FAILURE | RetryOn.RESET
_STATUSES = RetryOn.S502 | RetryOn.S503 | RetryOn.S504 | RetryOn.S5XX


class RetryPolicyLike(Protocol):
    """The fields of `jishi.registry.policies.RetryPolicy` the rules read."""

    @property
    def attempts(self) -> int: ...
    @property
    def on(self) -> Iterable[str]: ...
    @property
    def non_idempotent(self) -> bool: ...
    @property
    def per_try_timeout(self) -> float | None: ...
    @property
    def backoff_base(self) -> float: ...
    @property
    def backoff_max(self) -> float: ...


@dataclass(frozen=True, slots=True)
class RetryRules:
    """A route's retry section, ready for the hot path."""

    attempts: int = 2
    on: RetryOn = DEFAULT_ON
    non_idempotent: bool = False
    per_try_timeout: float | None = None
    backoff_base: float = 0.0
    backoff_max: float = 0.25

    @classmethod
    def from_policy(cls, policy: RetryPolicyLike) -> RetryRules:
        return cls(
            attempts=policy.attempts,
            on=RetryOn.parse(policy.on),
            non_idempotent=policy.non_idempotent,
            per_try_timeout=policy.per_try_timeout,
            backoff_base=policy.backoff_base,
            backoff_max=policy.backoff_max,
        )

    @property
    def on_status(self) -> bool:
        """Does the route retry on any response status?"""
        return bool(self.on & _STATUSES)

    def backoff(self, retry: int, rng: Rng) -> float:
        """Seconds to wait before retry number `retry` (1 for the first): full jitter, 0 when `backoff_base` is 0."""
        if self.backoff_base <= 0:
            return 0.0
        cap = min(self.backoff_max, self.backoff_base * 2.0 ** min(retry - 1, 30))
        return rng.random() * cap


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the shell knows about the failed try."""

    failure: Failure
    response_started: bool  # response bytes already went to the client
    got_bytes: bool  # any response byte arrived on this try (not counting a STATUS head held back)
    reused: bool  # the connection came from the keep-alive pool
    idempotent: bool  # GET, HEAD, OPTIONS, PUT, DELETE, TRACE
    replayable: bool  # the whole request body so far is still kept
    stale_retried: bool  # this request already had its one RETRY_FRESH
    tries: int
    retries: int
    retry_on: RetryOn = DEFAULT_ON
    non_idempotent: bool = False  # the route resends non-idempotent requests too
    status: int = 0  # for STATUS: the status the instance answered


def decide(a: Attempt) -> Action:
    """The action after the failed try `a`; see the module doc."""
    if a.response_started:
        return Action.ABORT
    more = a.tries <= a.retries
    if a.failure is Failure.CONNECT:
        if not a.retry_on & RetryOn.CONNECT_FAILURE:
            return Action.FAIL
        return Action.RETRY_OTHER if more else Action.GIVE_UP
    resendable = (a.idempotent or a.non_idempotent) and a.replayable and not a.got_bytes
    if a.failure is Failure.STATUS:
        return Action.RETRY_OTHER if resendable and more and a.retry_on.status(a.status) else Action.RELAY
    if not resendable:
        return Action.FAIL
    if a.failure is Failure.LOST:
        if a.reused and not a.stale_retried:
            return Action.RETRY_FRESH
        if a.retry_on & RetryOn.RESET:
            return Action.RETRY_OTHER if more else Action.GIVE_UP
    elif a.failure is Failure.TIMEOUT and a.retry_on & RetryOn.TIMEOUT:
        return Action.RETRY_OTHER if more else Action.GIVE_UP
    return Action.FAIL


def fallback(failure: Failure) -> Action:
    """What a vetoed RETRY_OTHER (retry budget spent, total timeout passed) becomes."""
    return Action.RELAY if failure is Failure.STATUS else Action.GIVE_UP
