"""A route's `rate_limit` section in the gateway: which key a request counts against, and who decides.

    RateGate(spec, route, workers)
        key_of(client, ex) -> bytes     the request's key: client IP, a header's or cookie's value, the path,
                                        or one key for the whole route
        single / keyed                  the local limiter (key "route") / the local limiters per key
        redis                           the shared limiter (`jishi.ratelimit.RedisLimiter`) when `redis:` is set
        note_shadowed(key, retry, now)  a refusal that shadow mode lets through

The chain (`jishi.gateway.policy`) calls the limiters itself: asking is one call on the admit path.

Local limits are the pure limiters of `jishi.core.resilience`, one per key (`KeyedLimiter`, at most
`MAX_KEYS` keys, least recently used evicted), or a single one when the key is the route:

    token_bucket     TokenBucket(requests / period, burst)
    gcra             GCRA(requests / period, burst − 1)                 (bursts of `burst`)
    sliding_window   SlidingWindowCounter(requests, period)
    fixed_window     FixedWindow(requests, period)                      (up to 2× at a window's edge)
    leaky_bucket     LeakyBucketMeter(requests / period, burst)

`burst` defaults to `requests`. On Redis the algorithm runs as a Lua script (one round trip per decision);
Redis has GCRA, token bucket and sliding window: a `leaky_bucket` limit runs as GCRA (the same meter) and a
`fixed_window` one as a sliding window (stricter at window edges). While Redis is unreachable each gateway
worker limits locally with 1/`workers` of the limit (`jishi.ratelimit`).

A request without the header or cookie its key names counts against one shared key, "-".
In shadow mode nothing is refused: would-be refusals are counted (`shadowed`) and logged at most once a second.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from jishi.core.resilience import (
    GCRA,
    FixedWindow,
    KeyedLimiter,
    LeakyBucketMeter,
    RateLimiter,
    SlidingWindowCounter,
    TokenBucket,
)
from jishi.ratelimit import Limit, RedisLimiter

if TYPE_CHECKING:
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange
    from jishi.registry.policies import RateLimit

__all__ = ["MAX_KEYS", "RateGate", "local_limiter", "redis_limit"]

log = logging.getLogger(__name__)

MAX_KEYS = 10_000
_NO_KEY = b"-"


def local_limiter(spec: RateLimit) -> RateLimiter:
    """A fresh pure limiter for one key of `spec`."""
    burst = spec.burst or spec.requests
    rate = spec.requests / spec.period
    algorithm = spec.algorithm
    if algorithm == "token_bucket":
        return TokenBucket(rate, burst)
    if algorithm == "gcra":
        return GCRA(rate, burst - 1)
    if algorithm == "sliding_window":
        return SlidingWindowCounter(spec.requests, spec.period)
    if algorithm == "fixed_window":
        return FixedWindow(spec.requests, spec.period)
    return LeakyBucketMeter(rate, burst)


def redis_limit(spec: RateLimit) -> Limit:
    """The shared limit of `spec` on Redis (see the module doc for leaky_bucket and fixed_window)."""
    burst = spec.burst or spec.requests
    rate = spec.requests / spec.period
    if spec.algorithm == "token_bucket":
        return Limit.token_bucket(rate, burst)
    if spec.algorithm in ("gcra", "leaky_bucket"):
        return Limit.gcra(rate, burst - 1)
    return Limit.sliding_window(spec.requests, spec.period)


def _header_value(lines: list[bytes], lower: bytes) -> bytes | None:
    for i in range(0, len(lines), 4):
        if lines[i].lower() == lower:
            return lines[i + 2]
    return None


def _key_function(key: str) -> Callable[[ClientConnection, Exchange], bytes]:
    kind, _, name = key.partition(":")
    if kind == "ip":
        return lambda client, ex: client.client_ip
    if kind == "route":
        return lambda client, ex: _NO_KEY
    if kind == "path":
        return lambda client, ex: ex.path.partition(b"?")[0]
    lower = name.strip().lower().encode("latin-1")
    if kind == "header":
        if lower == b"x-forwarded-for":  # kept aside by the parser (the gateway appends the client to it)
            return lambda client, ex: ex.xff or _NO_KEY
        return lambda client, ex: _header_value(ex.lines, lower) or _NO_KEY

    prefix = lower + b"="

    def cookie(client: ClientConnection, ex: Exchange) -> bytes:
        lines = ex.lines
        for i in range(0, len(lines), 4):
            if lines[i].lower() == b"cookie":
                for part in lines[i + 2].split(b";"):
                    part = part.strip()
                    if part.lower().startswith(prefix):
                        return part[len(prefix) :]
        return _NO_KEY

    return cookie


class RateGate:
    """The rate limit of one route; see the module doc."""

    def __init__(self, spec: RateLimit, route: str, workers: int = 1) -> None:
        self.spec = spec
        self.route = route
        self.shadow = spec.shadow
        self.key_of = _key_function(spec.key)
        self.shadowed = 0
        self._shadow_logged_at = float("-inf")
        self._shadow_unlogged = 0
        self.redis: RedisLimiter | None = None
        self.by_ip = spec.key == "ip"  # the key is `client.client_ip`: read it without calling `key_of`
        self.single: RateLimiter | None = None  # the key is the route: one limiter
        self.keyed: KeyedLimiter[bytes, RateLimiter] | None = None
        if spec.redis is not None:
            if spec.algorithm in ("fixed_window", "leaky_bucket"):
                shared = "gcra" if spec.algorithm == "leaky_bucket" else "sliding_window"
                log.info("route %s: the %s limit runs as %s on Redis", route, spec.algorithm, shared)
            self.redis = RedisLimiter.connect(
                spec.redis,
                redis_limit(spec),
                name=route,
                workers=workers,
                shadow=spec.shadow,
                timeout=spec.redis_timeout,
            )
        elif spec.key == "route":
            self.single = local_limiter(spec)
        else:
            self.keyed = KeyedLimiter(lambda: local_limiter(spec), MAX_KEYS)

    def note_shadowed(self, key: bytes, retry: float, now: float) -> None:
        """A refusal shadow mode let through: count it, log at most once a second."""
        self.shadowed += 1
        self._shadow_unlogged += 1
        if now - self._shadow_logged_at >= 1.0:
            log.info(
                "route %s rate limit (shadow): would refuse key %r (retry after %.3f s); %d would-be refusals "
                "since the last report",
                self.route,
                key.decode("latin-1"),
                retry,
                self._shadow_unlogged,
            )
            self._shadow_logged_at = now
            self._shadow_unlogged = 0

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
