"""RedisLimiter against a real redis-server: exact bursts, a limit shared by workers, Retry-After, key TTLs."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis_harness import RedisServer

from jishi.ratelimit import Limit, RedisLimiter
from jishi.testing import ProcessGroup

WORKER = Path(__file__).with_name("ratelimit_worker.py")
SLOW = 0.001  # permits per second: nothing refills during a test


@pytest.mark.parametrize(
    "limit", [Limit.gcra(SLOW, max_burst=9), Limit.token_bucket(SLOW, burst=10), Limit.sliding_window(10, 3600.0)]
)
async def test_burst_admits_exactly_the_limit(redis_server: RedisServer, limit: Limit) -> None:
    """A burst of 30 against a limit of 10 on Redis's clock admits exactly the first 10 and refuses the rest."""
    limiter = RedisLimiter.connect(redis_server.url, limit, name="burst", timeout=1.0)
    try:
        verdicts = [await limiter.acquire("client-1") for _ in range(30)]
    finally:
        await limiter.aclose()
    assert [v.allowed for v in verdicts] == [True] * 10 + [False] * 20
    assert [v.remaining for v in verdicts[:10]] == list(range(9, -1, -1))
    assert all(v.source == "redis" and v.retry_after > 0 for v in verdicts[10:])
    assert limiter.stats.redis == 30 and limiter.stats.rejected == 20 and limiter.stats.local == 0


async def test_keys_are_limited_separately(redis_server: RedisServer) -> None:
    """Each key has its own limit: one client's burst does not spend another's."""
    limiter = RedisLimiter.connect(redis_server.url, Limit.gcra(SLOW, max_burst=1), name="keys", timeout=1.0)
    try:
        a = [(await limiter.acquire("a")).allowed for _ in range(3)]
        b = [(await limiter.acquire("b")).allowed for _ in range(3)]
    finally:
        await limiter.aclose()
    assert a == b == [True, True, False]


async def test_two_limiters_sharing_redis_admit_the_total_not_double(redis_server: RedisServer) -> None:
    """Two limiters on separate connections, racing concurrently, admit the global 50 between them, not 100."""
    limit = Limit.gcra(SLOW, max_burst=49)
    one = RedisLimiter.connect(redis_server.url, limit, name="shared", timeout=1.0, workers=2)
    two = RedisLimiter.connect(redis_server.url, limit, name="shared", timeout=1.0, workers=2)
    try:
        verdicts = await asyncio.gather(*(w.acquire("route") for _ in range(60) for w in (one, two)))
    finally:
        await one.aclose()
        await two.aclose()
    assert sum(v.allowed for v in verdicts) == 50
    assert one.stats.redis + two.stats.redis == 120
    assert one.stats.rejected + two.stats.rejected == 70


def test_two_worker_processes_sharing_redis_admit_the_total(redis_server: RedisServer, procs: ProcessGroup) -> None:
    """Two processes (standing in for two gateway workers) racing on one Redis limit of 50 admit 50 in total."""
    start_at = time.time() + 1.5
    workers = [
        procs.start(f"worker-{i}", [sys.executable, str(WORKER), redis_server.url, "proc", "80", str(start_at)])
        for i in range(2)
    ]
    results = []
    for w in workers:
        assert w.popen.wait(timeout=30) == 0, w.log()
        results.append(json.loads(w.log().strip().splitlines()[-1]))
    assert sum(r["admitted"] for r in results) == 50, results
    assert all(r["redis"] == 80 for r in results), results


async def test_retry_after_is_exact(redis_server: RedisServer) -> None:
    """A refusal's Retry-After is exact: a request at that time is admitted, one a microsecond earlier is not."""
    limiter = RedisLimiter.connect(redis_server.url, Limit.gcra(10, max_burst=2), name="retry", timeout=1.0)
    try:
        for _ in range(3):
            assert (await limiter.acquire("k", now=50.0)).allowed
        refused = await limiter.acquire("k", now=50.02)
        assert not refused.allowed and refused.retry_after == pytest.approx(0.08, abs=1e-12)
        assert not (await limiter.acquire("k", now=50.1 - 1e-6)).allowed
        assert (await limiter.acquire("k", now=50.02 + refused.retry_after)).allowed
        never = await limiter.acquire("k", 4, now=60.0)
        assert not never.allowed and never.retry_after == float("inf")
    finally:
        await limiter.aclose()


async def test_retry_after_on_redis_clock(redis_server: RedisServer) -> None:
    """On Redis's own clock, waiting out the reported Retry-After gets the next request admitted."""
    limiter = RedisLimiter.connect(redis_server.url, Limit.gcra(5, max_burst=0), name="clock", timeout=1.0)
    try:
        assert (await limiter.acquire("k")).allowed
        refused = await limiter.acquire("k")
        assert not refused.allowed and 0.15 < refused.retry_after <= 0.2
        await asyncio.sleep(refused.retry_after + 0.002)
        assert (await limiter.acquire("k")).allowed
    finally:
        await limiter.aclose()


async def test_idle_keys_expire(redis_server: RedisServer, redis_client: Redis) -> None:
    """An admitted key carries a TTL of the time until its limiter is full again; a refusal writes nothing."""
    limiter = RedisLimiter.connect(redis_server.url, Limit.token_bucket(10, burst=5), name="ttl", timeout=1.0)
    try:
        await limiter.acquire("k", 5)
        ttl = await redis_client.pttl("jishi:rl:ttl:k")
        assert 400 <= ttl <= 502  # 5 tokens at 10/s: 0.5 s (+1 ms rounding)
        await limiter.acquire("k", 5)
        assert await redis_client.pttl("jishi:rl:ttl:k") <= ttl
        await asyncio.sleep(0.6)
        assert await redis_client.exists("jishi:rl:ttl:k") == 0
    finally:
        await limiter.aclose()


async def test_script_reloaded_after_flush(redis_server: RedisServer, redis_client: Redis) -> None:
    """After SCRIPT FLUSH (as after a Redis restart) the next decision still goes through, and the limit holds."""
    limiter = RedisLimiter.connect(redis_server.url, Limit.gcra(SLOW, max_burst=1), name="flush", timeout=1.0)
    try:
        assert (await limiter.acquire("k")).allowed
        await redis_client.script_flush()
        assert (await limiter.acquire("k")).source == "redis"
        assert not (await limiter.acquire("k")).allowed
        assert limiter.stats.redis_errors == 0
    finally:
        await limiter.aclose()


async def test_request_below_one_permit_is_a_caller_error(redis_server: RedisServer) -> None:
    """Asking for 0 permits raises ValueError naming the problem, without a round trip."""
    limiter = RedisLimiter.connect(redis_server.url, Limit.gcra(1), name="bad", timeout=1.0)
    try:
        with pytest.raises(ValueError, match="at least 1 permit"):
            await limiter.acquire("k", 0)
    finally:
        await limiter.aclose()
    assert limiter.stats.redis == 0
