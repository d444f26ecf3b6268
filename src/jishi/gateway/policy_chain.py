"""`RoutePolicy`: one route's chain of policies on the gateway's hot path (`jishi.gateway.policy` says what it
does and in which order; `policy_build` makes its parts).

Each stage is a method `(client, ex, now, stage_index) -> bool`: True goes on, False means it answered or holds
the request and goes on itself later (`_continue` from the next stage). The stages a route has are chosen once;
one or two of them are called without a loop. What an exchange holds is `ex.held` (bits of `policy_build`),
given back in `done` whatever ended the exchange.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jishi.core.resilience import Admission, BreakerState
from jishi.gateway import dispatch, policy_breaker
from jishi.gateway.policy_answers import FALLBACK_REASONS, answer, refuse
from jishi.gateway.policy_build import BULK, CONC, PERMIT, REFUSED, REPLACED, WAIT, Compiled
from jishi.gateway.policy_queue import WaitQueue

if TYPE_CHECKING:
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange
    from jishi.gateway.proxy import Proxy
    from jishi.ratelimit import Verdict

__all__ = ["RoutePolicy"]

log = logging.getLogger(__name__)

_CLOSED = BreakerState.CLOSED
LOG_DRAIN_LIMIT = 30.0  # seconds a replaced route's access log stays open for the requests still going on


class RoutePolicy:
    """The policies of one route; see the module doc."""

    def __init__(self, c: Compiled, proxy: Proxy) -> None:
        self.name = c.name
        self.c = c
        self.proxy = proxy
        self.loop = proxy.loop
        self.breaker = c.breaker
        self._bstate = c.breaker.state if c.breaker is not None else None
        self.rate_limited = 0
        self.shed = 0
        self._rng = random.Random()
        self._tasks: set[asyncio.Task[Verdict]] = set()
        self._queue: WaitQueue | None = None
        if c.bulkhead is not None and c.bulkhead.max_queue:
            self._queue = WaitQueue(c.bulkhead, self.loop, self._continue, self._waited_too_long)
        self._flush: asyncio.TimerHandle | None = None
        stages: list[Callable[[ClientConnection, Exchange, float, int], bool]] = []
        gate = c.gate
        if gate is not None:
            self._key_of = gate.key_of
            if gate.redis is not None:
                stages.append(self._rate_redis)
            elif gate.single is not None:
                self._acquire = gate.single.try_acquire
                stages.append(self._rate_single)
            else:
                assert gate.keyed is not None
                self._acquire_key = gate.keyed.try_acquire
                stages.append(self._rate_ip if gate.by_ip else self._rate_keyed)
        if c.limiter is not None:
            stages.append(self._concurrency)
        if c.bulkhead is not None:
            stages.append(self._bulkhead)
        if c.breaker is not None:
            stages.append(self._breaker)
        if c.rewrite is not None or c.response_edits is not None:
            stages.append(self._rewrite)
        if c.broken:  # a section could not be built: refuse rather than run unprotected
            stages = [self._policy_error]
        self._stages = tuple(stages)
        self._indexed = tuple(enumerate(stages))
        self._fail_statuses = c.failure_statuses
        self._log = c.access_log
        # One or two stages (the usual case) are called without a loop: `admit` is replaced on the instance (one
        # stage is `admit` itself: each stage's index defaults to 0).
        if len(stages) == 1:
            self.admit = stages[0]  # type: ignore[method-assign,assignment]
        elif len(stages) == 2:
            self._s0, self._s1 = stages
            self.admit = self._admit_two  # type: ignore[method-assign]

    # --- the hot path

    def admit(self, client: ClientConnection, ex: Exchange, now: float) -> bool:
        """Run the stages for `ex` (whose `policy` the caller has set to this one); see `jishi.gateway.policy`."""
        for i, stage in self._indexed:  # noqa: SIM110 - a plain loop is cheaper than all(generator)
            if not stage(client, ex, now, i):
                return False
        return True

    def _admit_two(self, client: ClientConnection, ex: Exchange, now: float) -> bool:
        return self._s0(client, ex, now, 0) and self._s1(client, ex, now, 1)

    def done(self, client: ClientConnection, ex: Exchange, now: float) -> None:
        held = ex.held
        if held:
            ex.held = 0
            if held == PERMIT:  # the usual case: only a breaker permit
                breaker = self.breaker
                assert breaker is not None
                status = ex.status
                if status in self._fail_statuses:
                    breaker.on_failure(now, now - ex.permit_at)
                elif status != 499:
                    breaker.on_success(now, now - ex.permit_at)
                else:
                    breaker.release(now)
                if breaker.state is not self._bstate:
                    self._breaker_changed()
            else:
                self._release(ex, held, now)
        access_log = self._log
        if access_log is not None:
            sample = self.c.sample
            if sample >= 1.0 or ex.status >= 400 or self._rng.random() < sample:
                # AccessLog.record, inlined (one call fewer a request)
                entries = access_log.entries
                entries.append(
                    (now, ex.t0, client.client_ip, ex.method, ex.url, ex.status, ex.bytes_out, ex.peer, ex.tries)
                )
                if len(entries) >= access_log.max_buffer:
                    access_log.flush()
                if self._flush is None:
                    self._flush = self.loop.call_later(access_log.interval, self._flush_log)

    def on_error(self, client: ClientConnection, ex: Exchange, status: int, code: str, message: str) -> bool:
        reason = FALLBACK_REASONS.get(code)
        if reason is None or reason not in self.c.fallback_on:
            return False
        self._fallback(client, ex, status, reason)
        return True

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

    # --- giving back what an exchange held

    def _release(self, ex: Exchange, held: int, now: float) -> None:
        c = self.c
        status = ex.failed_status or ex.status
        ignored = held & REFUSED or status == 499
        if held & PERMIT:
            breaker = self.breaker
            assert breaker is not None
            if ignored:
                breaker.release(now)
            elif status in c.failure_statuses:
                breaker.on_failure(now, now - ex.permit_at)
            else:
                breaker.on_success(now, now - ex.permit_at)
            if breaker.state is not self._bstate:
                self._breaker_changed()
            if held == PERMIT:
                return
        if held & CONC:
            limiter = c.limiter
            assert limiter is not None
            if ignored:
                limiter.release_ignored()
            else:
                limiter.release(ex.inflight, now - ex.permit_at, 502 <= status <= 504)
        if held & WAIT:
            assert self._queue is not None
            self._queue.cancel(ex.ticket)
        if held & BULK:
            if self._queue is not None:
                self._queue.leave(now)
            else:
                assert c.bulkhead is not None
                c.bulkhead.leave(now)

    def _waited_too_long(self, client: ClientConnection, ex: Exchange) -> None:
        """`ex` waited `max_wait` in the bulkhead's queue without getting a slot."""
        self.shed += 1
        assert self.c.bulkhead is not None
        message = f"route {self.name!r}: no request slot came free within {self.c.bulkhead.max_wait:g} s"
        if self._queue is not None and self._queue.closed:
            message = f"route {self.name!r} changed while the request waited for a slot; please retry"
        self._refuse(client, ex, "overloaded", 503, "bulkhead_full", message, None)
        client.flush()

    # --- breaker events, state, closing

    def _breaker_changed(self) -> None:
        """Publish the breaker's pending state changes: called whenever its state is not the one last published
        (open → half-open as soon as try_acquire makes it, so a failed probe's half-open → open is a change too),
        and by `state()` whatever the state."""
        breaker = self.breaker
        assert breaker is not None
        self._bstate = breaker.state
        wall = time.time() - self.loop.time()  # the breaker runs on the loop's clock
        self.proxy.events.extend(policy_breaker.changes(breaker, self.name, wall))

    def state(self) -> dict[str, Any]:
        """{"breaker": state or None, "rate_limited": n, "shed": n} (plus "rate_limit_shadowed": n)."""
        breaker = self.breaker
        if breaker is not None:
            breaker.poll(self.loop.time())
            self._breaker_changed()  # (whatever the state: a cycle may have ended where it began)
        gate = self.c.gate
        shadowed = 0
        if gate is not None:
            shadowed = gate.shadowed + (gate.redis.stats.shadow_rejected if gate.redis is not None else 0)
        return {
            "breaker": breaker.state.value if breaker is not None else None,
            "rate_limited": self.rate_limited,
            "shed": self.shed,
            "rate_limit_shadowed": shadowed,
        }

    def _flush_log(self) -> None:
        self._flush = None
        if self._log is not None:
            self._log.flush()

    async def _requests_done(self, limit: float = LOG_DRAIN_LIMIT) -> None:
        """Wait (at most `limit` seconds) until the requests this policy admitted are over."""
        deadline = self.loop.time() + limit
        while any((ex := c.active) is not None and ex.policy is self for c in self.proxy.clients):
            if self.loop.time() >= deadline:
                log.warning("route %s: requests still going on after %g s; its access log closes", self.name, limit)
                return
            await asyncio.sleep(0.05)

    async def aclose(self) -> None:
        """End this policy: its Redis decisions in flight are let finish (≤ 1 s), its access log stays open until
        the requests it admitted are over (≤ LOG_DRAIN_LIMIT s), then everything is closed."""
        if self._queue is not None:
            self._queue.close()  # waiters are refused now, not left to a timer that no longer runs
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        for task in list(self._tasks):
            task.cancel()
        if self._log is not None:
            await self._requests_done()  # their lines go to this route's log too
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        access_log, self.c.access_log, self._log = self.c.access_log, None, None
        if access_log is not None:
            atexit.unregister(access_log.close)
            access_log.close()
        if self.c.gate is not None:
            await self.c.gate.aclose()
