"""The Lua scripts decide exactly as the pure limiters of the same kind, request for request, at fixed times."""

from __future__ import annotations

import math
import random

import pytest
from redis.asyncio import Redis
from redis_harness import RedisServer

from jishi.core.resilience import GCRA, SlidingWindowCounter, TokenBucket
from jishi.ratelimit import Limit, RedisLimiter

SEEDS = [1, 2, 3]
STEPS = 300


def _requests(seed: int, biggest: int) -> list[tuple[float, int]]:
    """A random sequence of (time, permits): bursts, pauses, and now and then a request too big ever to pass."""
    rng = random.Random(seed)
    t, out = 1000.0, []
    for _ in range(STEPS):
        t = round(t + rng.choice([0.0, 0.0, 0.001, 0.013, 0.05, 0.1, 0.25, 0.7, 1.3]), 3)
        n = rng.choice([1, 1, 1, 1, 2, 3, biggest + 1]) if rng.random() < 0.9 else 1
        out.append((t, n))
    return out


def _same_retry(a: float, b: float) -> bool:
    return (math.isinf(a) and math.isinf(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


async def _limiter(server: RedisServer, limit: Limit, name: str) -> RedisLimiter:
    return RedisLimiter(Redis.from_url(server.url), limit, name=name, timeout=1.0, owns_client=True)


@pytest.mark.parametrize("seed", SEEDS)
async def test_gcra_script_matches_core_gcra(redis_server: RedisServer, seed: int) -> None:
    """GCRA in Redis admits, refuses, and reports Retry-After and remaining exactly as core GCRA.throttle."""
    limiter = await _limiter(redis_server, Limit.gcra(10, max_burst=4), f"gcra{seed}")
    core = GCRA(10, max_burst=4)
    try:
        for i, (t, n) in enumerate(_requests(seed, 5)):
            got = await limiter.acquire("k", n, now=t)
            want = core.throttle(t, n)
            assert got.source == "redis"
            assert got.allowed == want.allowed, (i, t, n, got, want)
            assert _same_retry(got.retry_after, 0.0 if want.allowed else want.retry_after), (i, t, n, got, want)
            assert got.remaining == want.remaining, (i, t, n, got, want)
    finally:
        await limiter.aclose()


@pytest.mark.parametrize("seed", SEEDS)
async def test_token_bucket_script_matches_core_token_bucket(redis_server: RedisServer, seed: int) -> None:
    """The token bucket in Redis admits, refuses and reports Retry-After and tokens left as core TokenBucket."""
    limiter = await _limiter(redis_server, Limit.token_bucket(5, burst=8), f"tb{seed}")
    core = TokenBucket(5, 8)
    try:
        for i, (t, n) in enumerate(_requests(seed, 8)):
            got = await limiter.acquire("k", n, now=t)
            allowed, retry = core.try_acquire(t, n)
            assert got.allowed == allowed, (i, t, n, got)
            assert _same_retry(got.retry_after, retry), (i, t, n, got, retry)
            assert got.remaining == math.floor(core.tokens(t) + 1e-9), (i, t, n, got)
    finally:
        await limiter.aclose()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("window", [1.0, 0.5])
async def test_sliding_window_script_matches_core_counter(redis_server: RedisServer, seed: int, window: float) -> None:
    """The sliding-window counter in Redis admits, refuses and reports Retry-After as core SlidingWindowCounter."""
    limiter = await _limiter(redis_server, Limit.sliding_window(10, window), f"sw{seed}")
    core = SlidingWindowCounter(10, window)
    admitted = 0
    try:
        for i, (t, n) in enumerate(_requests(seed, 10)):
            got = await limiter.acquire("k", n, now=t)
            allowed, retry = core.try_acquire(t, n)
            assert got.allowed == allowed, (i, t, n, got)
            assert _same_retry(got.retry_after, retry), (i, t, n, got, retry)
            assert 0 <= got.remaining <= 10
            admitted += allowed
    finally:
        await limiter.aclose()
    assert 0 < admitted < STEPS  # the sequence exercised both answers
