"""Many decisions at once share pipelined round trips, and stay exact, recover NOSCRIPT, and fall back together."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis
from redis_harness import RedisServer

from jishi.ratelimit import Limit, RedisLimiter

SLOW = 0.001  # permits per second: nothing refills during a test


async def test_concurrent_burst_is_exact_and_pipelined(redis_server: RedisServer, redis_client: Redis) -> None:
    """200 concurrent decisions on one limiter admit exactly the limit, in far fewer round trips than decisions."""
    limiter = RedisLimiter.connect(redis_server.url, Limit.token_bucket(SLOW, burst=64), name="many", timeout=1.0)
    try:
        await limiter.acquire("warm")
        before = (await redis_client.info("stats"))["total_connections_received"]
        verdicts = await asyncio.gather(*(limiter.acquire("k") for _ in range(200)))
        connections = (await redis_client.info("stats"))["total_connections_received"] - before
    finally:
        await limiter.aclose()
    assert sum(v.allowed for v in verdicts) == 64
    assert {v.source for v in verdicts} == {"redis"}
    assert sorted(v.remaining for v in verdicts if v.allowed) == list(range(64))
    assert connections <= 2  # one pipeline (and the lone first call), not a connection per decision


async def test_concurrent_decisions_reload_a_flushed_script(redis_server: RedisServer, redis_client: Redis) -> None:
    """A pipeline answered NOSCRIPT (script cache flushed) is resent with the source; every decision is Redis's."""
    limiter = RedisLimiter.connect(redis_server.url, Limit.gcra(SLOW, max_burst=9), name="nos", timeout=1.0)
    try:
        await limiter.acquire("warm")
        await redis_client.script_flush()
        verdicts = await asyncio.gather(*(limiter.acquire("k") for _ in range(30)))
    finally:
        await limiter.aclose()
    assert {v.source for v in verdicts} == {"redis"}
    assert sum(v.allowed for v in verdicts) == 10
    assert limiter.stats.redis_errors == 0


async def test_concurrent_decisions_fall_back_together_when_redis_stops(redis_server: RedisServer) -> None:
    """With Redis stopped, a burst of concurrent decisions all come back local, none raise, the share holds."""
    limiter = RedisLimiter.connect(
        redis_server.url, Limit.gcra(SLOW, max_burst=19), name="stop", workers=2, cooldown=30
    )
    try:
        await limiter.acquire("warm")
        redis_server.stop()
        verdicts = await asyncio.gather(*(limiter.acquire("k") for _ in range(40)))
    finally:
        await limiter.aclose()
    assert {v.source for v in verdicts} == {"local"}
    assert sum(v.allowed for v in verdicts) == 10  # 20 / 2 workers
    assert limiter.stats.fallbacks == 1


async def test_concurrent_decisions_on_hung_redis_are_bounded(redis_server: RedisServer, redis_client: Redis) -> None:
    """With Redis paused, 50 concurrent decisions all return (locally) within a few timeouts, not when it wakes."""
    limiter = RedisLimiter.connect(redis_server.url, Limit.gcra(SLOW, max_burst=9), name="hung", cooldown=30)
    try:
        await limiter.acquire("warm")
        await redis_client.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        started = time.perf_counter()
        verdicts = await asyncio.gather(*(limiter.acquire("k") for _ in range(50)))
        took = time.perf_counter() - started
    finally:
        await limiter.aclose()
    assert {v.source for v in verdicts} == {"local"}
    assert took < 0.2, took
    assert sum(v.allowed for v in verdicts) == 10
