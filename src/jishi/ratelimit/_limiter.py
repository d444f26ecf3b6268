"""`RedisLimiter`: one limit shared by every worker through Redis, local while Redis is away, or only watching.

Theory of operation
-------------------
`await limiter.acquire(key, n)` asks Redis once: EVALSHA of the limit's Lua script (`_scripts.py`), which reads
Redis's clock, decides, and writes the key atomically, so any number of gateway workers on any number of hosts share
one exact limit. Concurrent decisions share pipelined round trips (`_batch.py`). The call is bounded by `timeout`
(20 ms by default). An error or a timeout takes the link DOWN (`_link.py`): for `cooldown` seconds every decision is
made at once by a local limiter of the same kind with `1/workers` of the limit (`Limit.local`), one per key, without
touching the network; then one call probes Redis again and, when it answers, decisions are shared again. Every
fallback and recovery is logged and counted in `stats`. Local state is kept per worker and not carried into Redis or
back.

In shadow mode (`shadow=True`) the decision is made and reported exactly the same way — `Verdict.shadowed` is
set, `stats.shadow_rejected` counts, a log line (at most one a second, with the count) names the key — but the
request is admitted. Use it to try a new limit on live traffic before enforcing it.

The seam to Redis is the `redis.asyncio.Redis` client passed in (`RedisLimiter.connect(url, ...)` makes one with
the socket timeouts set and redis-py's own retries off, since a retry would only add latency here).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from jishi.core.resilience import GCRA, KeyedLimiter, RateLimiter, TokenBucket
from jishi.ratelimit._batch import Batcher
from jishi.ratelimit._limit import Limit
from jishi.ratelimit._link import Link, LinkState
from jishi.ratelimit._scripts import SCRIPTS

__all__ = ["LimiterStats", "RedisLimiter", "Verdict"]

logger = logging.getLogger(__name__)

REDIS = "redis"
LOCAL = "local"


class Verdict(NamedTuple):
    """One decision. `remaining` is -1 when the local stand-in of a sliding window cannot tell it."""

    allowed: bool
    retry_after: float  # seconds until the request would be admitted; 0.0 when admitted; inf when never
    remaining: int  # permits still available right after this decision
    source: str  # "redis" (the shared limit decided) or "local" (the fallback did)
    shadowed: bool = False  # the limit refused it, and shadow mode admitted it anyway


@dataclass
class LimiterStats:
    """Counters of one limiter, for metrics and tests."""

    redis: int = 0  # decisions made by Redis
    local: int = 0  # decisions made by the local fallback
    redis_errors: int = 0  # calls to Redis that failed or timed out
    fallbacks: int = 0  # times the limiter went from Redis to local
    recoveries: int = 0  # times it came back to Redis
    rejected: int = 0  # requests refused
    shadow_rejected: int = 0  # requests the limit refused and shadow mode admitted


class RedisLimiter:
    """A `Limit` shared through Redis by every worker, with a local fallback and a shadow mode."""

    def __init__(
        self,
        client: Redis,
        limit: Limit,
        *,
        name: str = "default",
        prefix: str = "jishi:rl:",
        workers: int = 1,
        timeout: float = 0.02,
        cooldown: float = 0.5,
        shadow: bool = False,
        clock: Callable[[], float] = time.monotonic,
        max_local_keys: int = 10_000,
        owns_client: bool = False,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"redis limiter timeout must be positive seconds, not {timeout!r}")
        self.limit = limit
        self.name = name
        self.shadow = shadow
        self.timeout = timeout
        self.workers = workers
        self.stats = LimiterStats()
        self._client = client
        self._owns_client = owns_client
        self._batcher = Batcher(client, timeout)
        self._script = SCRIPTS[limit.algorithm]
        self._args = limit.script_args()
        self._key_prefix = f"{prefix}{name}:"
        self._clock = clock
        self._link = Link(cooldown)
        limit.local(workers)  # validates `workers` now rather than at the first fallback
        self._local: KeyedLimiter[str, RateLimiter] = KeyedLimiter(partial(limit.local, workers), max_local_keys)
        self._shadow_logged_at = -math.inf
        self._shadow_unlogged = 0

    @classmethod
    def connect(cls, url: str, limit: Limit, *, timeout: float = 0.02, **options: Any) -> RedisLimiter:
        """A limiter on its own client for `url` (`redis://127.0.0.1:6379/0`); `aclose()` closes it."""
        client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, limit, timeout=timeout, owns_client=True, **options)

    @property
    def link_state(self) -> LinkState:
        """UP (deciding in Redis), DOWN (deciding locally) or PROBING (one call is trying Redis again)."""
        return self._link.state

    async def acquire(self, key: str = "", n: int = 1, *, now: float | None = None) -> Verdict:
        """Decide `n` permits for `key`. `now` (seconds) replaces Redis's clock and the local one, for replays."""
        if n < 1:
            raise ValueError(f"a request takes at least 1 permit, not {n}")
        verdict = await self._decide(key, n, now)
        if verdict.allowed:
            return verdict
        if not self.shadow:
            self.stats.rejected += 1
            return verdict
        self._report_shadow(key, verdict)
        return Verdict(True, 0.0, verdict.remaining, verdict.source, True)

    async def _decide(self, key: str, n: int, now: float | None) -> Verdict:
        link = self._link
        if link.ask(self._clock()):
            reply = await self._ask_redis(key, n, now, probe=link.state is LinkState.PROBING)
            if reply is not None:
                self.stats.redis += 1
                return Verdict(bool(reply[0]), float(reply[1]), int(reply[2]), REDIS)
        return self._decide_locally(key, n, now)

    async def _ask_redis(self, key: str, n: int, now: float | None, *, probe: bool) -> Any:
        """Redis's reply `[allowed, retry_after, remaining]`, or None when it failed (counted and logged)."""
        settled = False
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self._batcher.call(
                    self._script, (self._key_prefix + key,), ("" if now is None else now, n, *self._args)
                )
            settled = True
        except (RedisError, OSError, TimeoutError) as exc:
            settled = True
            self._failed(exc)
            return None
        finally:
            if probe and not settled:
                self._link.abandoned()
        if self._link.succeeded(probe):
            self.stats.recoveries += 1
            logger.info("rate limit %r: Redis answers again; deciding with the shared limit", self.name)
        return reply

    def _failed(self, exc: BaseException) -> None:
        self.stats.redis_errors += 1
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else f"no answer within {self.timeout * 1000:g} ms"
        if self._link.failed(self._clock()):
            self.stats.fallbacks += 1
            logger.warning(
                "rate limit %r: Redis failed (%s); deciding locally with 1/%d of the limit, retrying Redis in %g s",
                self.name,
                reason,
                self.workers,
                self._link.cooldown,
            )
        else:
            logger.debug("rate limit %r: Redis still failing (%s)", self.name, reason)

    def _decide_locally(self, key: str, n: int, now: float | None) -> Verdict:
        t = self._clock() if now is None else now
        allowed, retry = self._local.try_acquire(key, t, n)
        self.stats.local += 1
        limiter = self._local.get(key)
        return Verdict(allowed, retry, _remaining(limiter, t), LOCAL)

    def _report_shadow(self, key: str, verdict: Verdict) -> None:
        self.stats.shadow_rejected += 1
        self._shadow_unlogged += 1
        t = self._clock()
        if t - self._shadow_logged_at >= 1.0:
            logger.info(
                "rate limit %r (shadow): would refuse key %r (retry after %.3f s, %s); %d would-be refusals since "
                "the last report",
                self.name,
                key,
                verdict.retry_after,
                verdict.source,
                self._shadow_unlogged,
            )
            self._shadow_logged_at = t
            self._shadow_unlogged = 0

    async def aclose(self) -> None:
        """Stop the round trips in flight, and close the Redis client if this limiter made it."""
        await self._batcher.aclose()
        if self._owns_client:
            await self._client.aclose()


def _remaining(limiter: RateLimiter | None, now: float) -> int:
    """What a local limiter has left at `now`, or -1 when it cannot say without spending it."""
    if isinstance(limiter, TokenBucket):
        return int(limiter.tokens(now) + 1e-9)
    if isinstance(limiter, GCRA):
        # A request larger than the limit is refused without changing anything, and reports what remains.
        return limiter.throttle(now, limiter.max_burst + 2).remaining
    return -1
