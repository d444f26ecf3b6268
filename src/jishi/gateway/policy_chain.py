"""`RoutePolicy`: one route's chain of policies on the gateway's hot path (`jishi.gateway.policy` says what it
does and in which order; `policy_build` makes its parts).

This module builds the chain and runs it (`admit`), gives back what an exchange held when it is over (`done`,
whatever ended it), answers errors with a fallback (`on_error`), reports state (`state`) and closes a replaced
route's policy (`aclose`). The stages themselves and the answers they give are in `jishi.gateway.policy_stages`
(`PolicyStages`, the base class). The stages a route has are chosen once; one or two of them are called without
a loop.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import random
from typing import TYPE_CHECKING, Any

from jishi.gateway.policy_answers import FALLBACK_REASONS
from jishi.gateway.policy_build import BULK, CONC, PERMIT, REFUSED, WAIT, Compiled
from jishi.gateway.policy_queue import WaitQueue
from jishi.gateway.policy_stages import PolicyStages, Stage

if TYPE_CHECKING:
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange
    from jishi.gateway.proxy import Proxy
    from jishi.ratelimit import Verdict

__all__ = ["RoutePolicy"]

log = logging.getLogger(__name__)

LOG_DRAIN_LIMIT = 30.0  # seconds a replaced route's access log stays open for the requests still going on


class RoutePolicy(PolicyStages):
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
        stages: list[Stage] = []
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

    # --- state, closing

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

    async def _queue_drained(self, queue: WaitQueue) -> None:
        """Wait until no request waits in `queue`: each gets a slot as the running requests end, or its
        `max_wait` passes (the queue's timer answers it)."""
        assert self.c.bulkhead is not None
        deadline = self.loop.time() + self.c.bulkhead.max_wait + 1.0
        while queue.waiting():
            if self.loop.time() >= deadline:
                log.warning("route %s: requests still wait in its replaced bulkhead queue; refusing them", self.name)
                return
            await asyncio.sleep(0.05)

    async def _requests_done(self, limit: float = LOG_DRAIN_LIMIT) -> None:
        """Wait (at most `limit` seconds) until the requests this policy admitted are over."""
        deadline = self.loop.time() + limit
        while any((ex := c.active) is not None and ex.policy is self for c in self.proxy.clients):
            if self.loop.time() >= deadline:
                log.warning("route %s: requests still going on after %g s; its access log closes", self.name, limit)
                return
            await asyncio.sleep(0.05)

    async def aclose(self, *, drain: bool = False) -> None:
        """End this policy: with `drain` (the route changed) the requests waiting in its bulkhead queue keep
        waiting there for a slot (≤ max_wait); its Redis decisions in flight are let finish (≤ 1 s), its access
        log stays open until the requests it admitted are over (≤ LOG_DRAIN_LIMIT s), then everything is
        closed."""
        queue = self._queue
        if queue is not None:
            if drain:
                await self._queue_drained(queue)
            queue.close()  # waiters left are refused now, not left to a timer that no longer runs
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
