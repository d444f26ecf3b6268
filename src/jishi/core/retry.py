"""What the gateway does after one try of a request failed: the failover rules as one pure decision.

Theory of operation
-------------------
A try fails in one of these ways (`Failure`):

    CONNECT    no connection could be made (refused, unreachable, connect timeout)
    LOST       the connection closed or was reset before the response was complete
    TIMEOUT    the instance sent nothing for the route's read timeout
    PROTOCOL   the instance sent something that is not HTTP

The decision (`decide`), in order:

1. Once any of the response went to the client nothing can be redone: ABORT (close the client connection).
2. CONNECT: nothing was sent, so any request may go elsewhere: mark the peer down, RETRY_OTHER while tries
   remain, else GIVE_UP.
3. LOST before any response byte, for an idempotent request whose body is still kept (≤ 64 KiB):
   on a pooled (reused) connection, the first time, the instance most likely closed an idle keep-alive
   connection: RETRY_FRESH (same peer, new connection, not counted as a try). Otherwise mark the peer down
   and RETRY_OTHER while tries remain, else GIVE_UP.
4. Everything else answers the client now: TIMEOUT → 504, LOST/PROTOCOL → 502 (FAIL). A request that may
   not be repeated (POST, PATCH, or a body no longer kept) is never sent twice.

`tries` counts the tries made so far (1 after the first); a route with `retries` = 2 makes at most 3.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Action", "Attempt", "Failure", "decide"]


class Failure(enum.Enum):
    CONNECT = "connect"
    LOST = "lost"
    TIMEOUT = "timeout"
    PROTOCOL = "protocol"


class Action(enum.Enum):
    ABORT = "abort"  # the response had started: close the client connection
    RETRY_FRESH = "retry_fresh"  # same peer, new connection, not counted as a try
    RETRY_OTHER = "retry_other"  # mark the peer down, try another one
    GIVE_UP = "give_up"  # mark the peer down; no try left: 502 (504 if the last failure was a connect timeout)
    FAIL = "fail"  # answer now: 504 for TIMEOUT, 502 otherwise


@dataclass(frozen=True, slots=True)
class Attempt:
    """What the shell knows about the failed try."""

    failure: Failure
    response_started: bool  # response bytes already went to the client
    got_bytes: bool  # any response byte arrived on this try
    reused: bool  # the connection came from the keep-alive pool
    idempotent: bool  # GET, HEAD, OPTIONS, PUT, DELETE, TRACE
    replayable: bool  # the whole request body so far is still kept
    stale_retried: bool  # this request already had its one RETRY_FRESH
    tries: int
    retries: int


def decide(a: Attempt) -> Action:
    """The action after the failed try `a`; see the module doc."""
    if a.response_started:
        return Action.ABORT
    if a.failure is Failure.CONNECT:
        return Action.RETRY_OTHER if a.tries <= a.retries else Action.GIVE_UP
    if a.failure is Failure.LOST and not a.got_bytes and a.idempotent and a.replayable:
        if a.reused and not a.stale_retried:
            return Action.RETRY_FRESH
        return Action.RETRY_OTHER if a.tries <= a.retries else Action.GIVE_UP
    return Action.FAIL
