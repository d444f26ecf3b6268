"""The admission side of a route's policy chain: `PolicyStages`, the base class of
`jishi.gateway.policy_chain.RoutePolicy` (which builds the chain, runs it, gives back what an exchange held and
reports state; `jishi.gateway.policy` says what the chain does and in which order).

Each stage is a method `(client, ex, now, stage_index) -> bool`: True goes on, False means it answered or holds
the request and goes on itself later (`_continue` from the next stage, after a Redis answer or a bulkhead slot).
A stage that admits records what the exchange now holds in `ex.held` (bits of `policy_build`); one that refuses
answers through `_refuse` (a JSON error, or the route's fallback when it has one for that reason). Breaker state
changes are published by `_breaker_changed` (appended to `proxy.events`).

The attributes the stages read are set by `RoutePolicy.__init__`; they are declared here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jishi.core.resilience import Admission, BreakerState
from jishi.gateway import dispatch, policy_breaker
from jishi.gateway.policy_answers import answer, refuse
from jishi.gateway.policy_build import BULK, CONC, PERMIT, REFUSED, REPLACED, Compiled

if TYPE_CHECKING:
    from jishi.core.resilience import Breaker, Decision
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange
    from jishi.gateway.policy_queue import WaitQueue
    from jishi.gateway.proxy import Proxy
    from jishi.ratelimit import Verdict

__all__ = ["PolicyStages", "Stage"]

log = logging.getLogger(__name__)

_CLOSED = BreakerState.CLOSED

Stage = Callable[["ClientConnection", "Exchange", float, int], bool]


class PolicyStages:
    """The stages of one route's chain and the answers they give; see the module doc."""

    name: str
    c: Compiled
    proxy: Proxy
    loop: asyncio.AbstractEventLoop
    breaker: Breaker | None
    _bstate: BreakerState | None  # the breaker state last published
    rate_limited: int
    shed: int
    _tasks: set[asyncio.Task[Verdict]]  # Redis decisions in flight
    _queue: WaitQueue | None  # the bulkhead's wait queue
    _stages: tuple[Stage, ...]
    _key_of: Callable[[ClientConnection, Exchange], bytes]
    _acquire: Callable[[float], Decision]
    _acquire_key: Callable[[bytes, float], Decision]

    # --- stages: each returns True to go on, False when it answered or holds the request

    def _continue(self, client: ClientConnection, ex: Exchange, start: int) -> None:
        """Go on with the chain from stage `start` after a wait (a Redis answer, a bulkhead slot)."""
        if ex.finished or client.closed:
            return
        now = self.loop.time()
        stages = self._stages
        try:
            for i in range(start, len(stages)):
                if not stages[i](client, ex, now, i):
                    client.flush()
                    return
            dispatch.proceed(client, ex, now)
        except Exception:  # (called from the loop: nobody above would answer the request)
            client.failed(ex, f"in the policies of route {self.name!r}")
        client.flush()

    def _rate_single(self, client: ClientConnection, ex: Exchange, now: float, i: int = 0) -> bool:
        allowed, retry = self._acquire(now)
        return allowed or self._over_limit(client, ex, b"-", retry, now)

    def _rate_ip(self, client: ClientConnection, ex: Exchange, now: float, i: int = 0) -> bool:
        key = client.client_ip
        allowed, retry = self._acquire_key(key, now)
        return allowed or self._over_limit(client, ex, key, retry, now)

    def _rate_keyed(self, client: ClientConnection, ex: Exchange, now: float, i: int = 0) -> bool:
        key = self._key_of(client, ex)
        allowed, retry = self._acquire_key(key, now)
        return allowed or self._over_limit(client, ex, key, retry, now)

    def _over_limit(self, client: ClientConnection, ex: Exchange, key: bytes, retry: float, now: float) -> bool:
        gate = self.c.gate
        assert gate is not None
        if gate.shadow:
            gate.note_shadowed(key, retry, now)
            return True
        self._limited(client, ex, retry)
        return False

    def _rate_redis(self, client: ClientConnection, ex: Exchange, now: float, i: int = 0) -> bool:
        gate = self.c.gate
        assert gate is not None and gate.redis is not None
        key = gate.key_of(client, ex)
        task = self.loop.create_task(gate.redis.acquire(key.decode("latin-1")))
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._redis_answered(t, client, ex, i))
        return False

    def _redis_answered(self, task: asyncio.Task[Verdict], client: ClientConnection, ex: Exchange, i: int) -> None:
        self._tasks.discard(task)
        if ex.finished or client.closed:
            return
        if task.cancelled():  # the route changed (`aclose`) before Redis answered: the request is not dropped
            log.warning("route %s changed while a rate limit decision was pending; admitting the request", self.name)
            self._continue(client, ex, i + 1)
            return
        error = task.exception()
        if error is not None:
            log.error("route %s: rate limit decision failed; admitting the request", self.name, exc_info=error)
        elif not task.result().allowed:
            self._limited(client, ex, task.result().retry_after)
            client.flush()
            return
        self._continue(client, ex, i + 1)

    def _limited(self, client: ClientConnection, ex: Exchange, retry: float) -> None:
        self.rate_limited += 1
        spec = self.c.spec.rate_limit
        assert spec is not None
        message = f"route {self.name!r}: more than {spec.requests} requests per {spec.period:g} s"
        self._refuse(client, ex, "rate_limited", 429, "rate_limited", message, retry)

    def _concurrency(self, client: ClientConnection, ex: Exchange, now: float, i: int = 0) -> bool:
        limiter = self.c.limiter
        assert limiter is not None
        inflight = limiter.try_acquire()
        if inflight:
            ex.inflight = inflight
            ex.held |= CONC
            ex.permit_at = now  # the sample runs from admission (a breaker stage after this one moves it on)
            return True
        self.shed += 1
        message = f"route {self.name!r} is at its concurrency limit of {limiter.limit} requests in progress"
        self._refuse(client, ex, "overloaded", 503, "overloaded", message, None)
        return False

    def _bulkhead(self, client: ClientConnection, ex: Exchange, now: float, i: int = 0) -> bool:
        bulkhead = self.c.bulkhead
        assert bulkhead is not None
        admission, ticket = bulkhead.enter(now)
        if bulkhead.dropped:  # waiters past their deadline that enter() dropped: answer them
            assert self._queue is not None
            self._queue.reap()
        if admission is Admission.RUN:
            ex.held |= BULK
            return True
        if admission is Admission.WAIT:
            assert self._queue is not None
            self._queue.wait(ticket, client, ex, i + 1)
            return False
        self.shed += 1
        message = f"route {self.name!r} has {bulkhead.max_concurrent} requests in progress"
        message += f" and {bulkhead.waiting} waiting" if bulkhead.max_queue else ""
        self._refuse(client, ex, "overloaded", 503, "bulkhead_full", message, None)
        return False

    def _breaker(self, client: ClientConnection, ex: Exchange, now: float, i: int = 0) -> bool:
        breaker = self.breaker
        assert breaker is not None
        if breaker.state is _CLOSED:  # (closed permits every call: no call needed)
            ex.held |= PERMIT
            ex.permit_at = now
            return True
        if breaker.try_acquire(now):
            if breaker.state is not self._bstate:  # open → half-open: published now, before the probe's outcome
                self._breaker_changed()
            ex.held |= PERMIT
            ex.permit_at = now
            return True
        if breaker.state is not self._bstate:
            self._breaker_changed()
        state, retry = policy_breaker.refusal(breaker, now)
        message = f"route {self.name!r}: the circuit breaker is {state.value.replace('_', '-')}"
        self._refuse(client, ex, "breaker_open", 503, "circuit_open", message, retry, state=state.value)
        return False

    def _policy_error(self, client: ClientConnection, ex: Exchange, now: float, i: int = 0) -> bool:
        sections = ", ".join(self.c.broken)
        message = f"route {self.name!r} is refused: its {sections} policy could not be set up (see the gateway log)"
        refuse(client, ex, 503, "policy_error", message)
        return False

    def _rewrite(self, client: ClientConnection, ex: Exchange, now: float, i: int = 0) -> bool:
        rewrite = self.c.rewrite
        if rewrite is not None:
            rewrite.apply(ex)
        ex.response_edits = self.c.response_edits
        return True

    # --- answers

    def _refuse(
        self,
        client: ClientConnection,
        ex: Exchange,
        reason: str,
        status: int,
        code: str,
        message: str,
        retry: float | None,
        **fields: Any,
    ) -> None:
        ex.held |= REFUSED
        if reason in self.c.fallback_on:
            self._fallback(client, ex, status, reason)
        else:
            refuse(client, ex, status, code, message, retry, **fields)

    def _fallback(self, client: ClientConnection, ex: Exchange, status: int, reason: str) -> None:
        ex.failed_status = status
        ex.held |= REPLACED
        fb_status, content_type, body = self.c.fallback
        answer(client, ex, fb_status, content_type, body, b"X-Jishi-Fallback: %s\r\n" % reason.encode())

    def _waited_too_long(self, client: ClientConnection, ex: Exchange) -> None:
        """`ex` waited `max_wait` in the bulkhead's queue without getting a slot."""
        self.shed += 1
        assert self.c.bulkhead is not None
        message = f"route {self.name!r}: no request slot came free within {self.c.bulkhead.max_wait:g} s"
        if self._queue is not None and self._queue.closed:
            message = f"route {self.name!r} changed while the request waited for a slot; please retry"
        self._refuse(client, ex, "overloaded", 503, "bulkhead_full", message, None)
        client.flush()

    # --- breaker events

    def _breaker_changed(self) -> None:
        """Publish the breaker's pending state changes: called whenever its state is not the one last published
        (open → half-open as soon as try_acquire makes it, so a failed probe's half-open → open is a change too),
        and by `state()` whatever the state."""
        breaker = self.breaker
        assert breaker is not None
        self._bstate = breaker.state
        wall = time.time() - self.loop.time()  # the breaker runs on the loop's clock
        self.proxy.events.extend(policy_breaker.changes(breaker, self.name, wall))
