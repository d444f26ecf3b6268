"""What one decision costs through Redis on loopback, next to a bare PING on the same client, in the same run."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from redis_harness import RedisServer

from jishi.ratelimit import Limit, RedisLimiter
from jishi.testing import free_port

ROUNDS = 2000


async def _us_per_call(call: Callable[[], Awaitable[object]], rounds: int = ROUNDS) -> float:
    for _ in range(100):  # warm up: connection, script cache
        await call()
    started = time.perf_counter()
    for _ in range(rounds):
        await call()
    return (time.perf_counter() - started) / rounds * 1e6


async def test_decision_cost_on_loopback(redis_server: RedisServer) -> None:
    """A Redis decision costs one round trip (within 3× a bare PING); concurrent ones share round trips; a local
    fallback decision costs no I/O. Prints RESULT with µs per call, and the raw socket round trip as the floor."""
    limiter = RedisLimiter.connect(redis_server.url, Limit.gcra(1e6, max_burst=1000), name="bench", timeout=1.0)
    client = limiter._client
    reader, writer = await asyncio.open_connection("127.0.0.1", redis_server.port)

    async def raw_ping() -> None:
        writer.write(b"PING\r\n")
        await reader.readline()

    try:
        raw = await _us_per_call(raw_ping)
        ping = await _us_per_call(client.ping)
        gcra = await _us_per_call(lambda: limiter.acquire("k"))
        started = time.perf_counter()
        for _ in range(ROUNDS // 100):
            await asyncio.gather(*(limiter.acquire(f"k{i}") for i in range(100)))
        concurrent = (time.perf_counter() - started) / ROUNDS * 1e6
    finally:
        writer.close()
        await writer.wait_closed()
        await limiter.aclose()
    down = RedisLimiter.connect(f"redis://127.0.0.1:{free_port()}/0", Limit.gcra(1e6, 1000), name="b", cooldown=60)
    try:
        local = await _us_per_call(lambda: down.acquire("k"))
    finally:
        await down.aclose()
    result = {"raw_socket_rtt_us": raw, "redis_py_ping_us": ping, "redis_decision_us": gcra}
    result["redis_decision_concurrent_us"] = concurrent
    result |= {"local_fallback_us": local, "ratio_to_ping": gcra / ping}
    print("RESULT " + json.dumps({k: round(v, 2) for k, v in result.items()}))
    assert limiter.stats.redis == ROUNDS + 100 + ROUNDS and limiter.stats.local == 0
    assert gcra < 3 * ping, result  # one round trip, not two
    assert concurrent < gcra, result  # pipelined
    assert local < 50, result
