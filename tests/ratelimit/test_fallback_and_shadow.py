"""RedisLimiter when Redis dies, hangs or comes back, and in shadow mode — against a real redis-server."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from redis.asyncio import Redis
from redis_harness import RedisServer

from jishi.ratelimit import Limit, LinkState, RedisLimiter
from jishi.testing import free_port

SLOW = 0.001  # permits per second: nothing refills during a test


async def _until_redis(limiter: RedisLimiter, key: str) -> None:
    """Ask (and spend) permits of `key` until Redis decides again (AssertionError after 5 s)."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if (await limiter.acquire(key)).source == "redis":
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the limiter did not return to Redis within 5 s: {limiter.stats}")


async def test_redis_stopped_mid_run_falls_back_locally_and_returns(redis_server: RedisServer) -> None:
    """Redis stopped: decisions go on locally at 1/workers of the limit, at once; restarted: back to Redis."""
    limiter = RedisLimiter.connect(
        redis_server.url, Limit.token_bucket(SLOW, burst=10), name="down", workers=2, cooldown=0.2
    )
    try:
        assert all([(await limiter.acquire("k")).allowed for _ in range(4)])
        redis_server.stop()

        verdicts, costs = [], []
        for _ in range(12):
            started = time.perf_counter()
            verdicts.append(await limiter.acquire("k"))
            costs.append(time.perf_counter() - started)
        assert {v.source for v in verdicts} == {"local"}
        assert sum(v.allowed for v in verdicts) == 5  # the local share: burst 10 / 2 workers
        assert limiter.link_state is LinkState.DOWN
        assert limiter.stats.fallbacks == 1 and limiter.stats.redis_errors == 1
        assert max(costs[1:]) < 0.01, costs  # while DOWN, no decision waits on the network (a timeout is 20 ms)

        redis_server.start()
        await _until_redis(limiter, "other")
        assert limiter.stats.recoveries == 1 and limiter.link_state is LinkState.UP
        again = [await limiter.acquire("fresh") for _ in range(12)]
        assert [v.allowed for v in again] == [True] * 10 + [False] * 2
        assert {v.source for v in again} == {"redis"}
    finally:
        await limiter.aclose()


async def test_hung_redis_costs_one_timeout_then_nothing(redis_server: RedisServer, redis_client: Redis) -> None:
    """Redis not answering (CLIENT PAUSE): one call waits the 20 ms timeout, the next decide locally at once;
    once it answers again, decisions are Redis's and correct (no late reply is read as a new one)."""
    limiter = RedisLimiter.connect(redis_server.url, Limit.gcra(SLOW, max_burst=9), name="hung", cooldown=0.6)
    try:
        assert (await limiter.acquire("k")).source == "redis"  # connected
        await redis_client.execute_command("CLIENT", "PAUSE", 400, "ALL")
        started = time.perf_counter()
        first = await limiter.acquire("k")
        waited = time.perf_counter() - started
        assert first.source == "local" and first.allowed
        assert 0.015 <= waited < 0.1, waited
        started = time.perf_counter()
        rest = [await limiter.acquire("k") for _ in range(20)]
        assert time.perf_counter() - started < 0.1  # 20 timeouts would take 0.4 s
        assert {v.source for v in rest} == {"local"}
        assert sum(v.allowed for v in [first, *rest]) == 10  # workers=1: the whole limit, locally
        assert limiter.stats.redis_errors == 1

        await asyncio.sleep(0.6)  # the pause (0.4 s) and the cool-down are over
        await _until_redis(limiter, "other")
        fresh = [await limiter.acquire("fresh") for _ in range(12)]
        assert [(v.source, v.allowed) for v in fresh] == [("redis", True)] * 10 + [("redis", False)] * 2
        assert [v.remaining for v in fresh[:3]] == [9, 8, 7]
    finally:
        await limiter.aclose()


async def test_fallback_decides_at_the_workers_share_exactly() -> None:
    """With no Redis at all, GCRA 100/s burst 40 over 4 workers decides as GCRA 25/s burst 10, at exact times."""
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    limiter = RedisLimiter.connect(url, Limit.gcra(100, max_burst=39), name="nowhere", workers=4, cooldown=60)
    try:
        burst = [await limiter.acquire("k", now=10.0) for _ in range(11)]
        assert [v.allowed for v in burst] == [True] * 10 + [False]
        assert burst[-1].retry_after == pytest.approx(0.04, abs=1e-12)  # one emission interval at 25/s
        assert [v.remaining for v in burst[:3]] == [9, 8, 7]
        assert (await limiter.acquire("k", now=10.04)).allowed
        assert limiter.stats.local == 12 and limiter.stats.redis == 0 and limiter.stats.fallbacks == 1
    finally:
        await limiter.aclose()


async def test_shadow_mode_never_refuses_but_counts_and_logs(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """In shadow mode every request is admitted; would-be refusals are flagged, counted and logged."""
    limiter = RedisLimiter.connect(redis_server.url, Limit.gcra(SLOW, max_burst=2), name="watch", shadow=True)
    try:
        with caplog.at_level(logging.INFO, logger="jishi.ratelimit"):
            verdicts = [await limiter.acquire("k") for _ in range(10)]
    finally:
        await limiter.aclose()
    assert all(v.allowed and v.retry_after == 0.0 for v in verdicts)
    assert [v.shadowed for v in verdicts] == [False] * 3 + [True] * 7
    assert limiter.stats.shadow_rejected == 7 and limiter.stats.rejected == 0
    assert any("would refuse key 'k'" in r.getMessage() for r in caplog.records)


async def test_shadow_mode_holds_while_redis_is_down() -> None:
    """Shadow mode decides with the local fallback when Redis is unreachable, and still refuses nobody."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    limiter = RedisLimiter.connect(url, Limit.token_bucket(SLOW, burst=4), name="sd", workers=2, shadow=True)
    try:
        verdicts = [await limiter.acquire("k") for _ in range(6)]
    finally:
        await limiter.aclose()
    assert all(v.allowed and v.source == "local" for v in verdicts)
    assert [v.shadowed for v in verdicts] == [False] * 2 + [True] * 4
    assert limiter.stats.shadow_rejected == 4
