"""A route's rate limit shared through a real redis-server: in one proxy, and by two gateway worker processes;
limiting goes on locally while Redis is stopped."""

from __future__ import annotations

import asyncio
import http.client
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from gateway_harness import GatewayUnderTest, simple_route, start_backend

sys.path.insert(0, str(Path(__file__).parents[1] / "ratelimit"))
from redis_harness import RedisServer, redis_server

from jishi.gateway import policy
from jishi.gateway.snapshot import SnapshotFile
from jishi.gateway.view import RegistryView
from jishi.registry.policies import RateLimit
from jishi.testing import ProcessGroup, free_port, wait_for_port

__all__ = ["redis_server"]


async def test_redis_limit_in_one_proxy_and_local_while_redis_is_down(
    gateway: GatewayUnderTest, backends, redis_server: RedisServer
) -> None:
    """5 per hour on Redis: 5 admitted then 429 with Retry-After; with Redis stopped the proxy limits locally
    (its own fresh bucket of 5), so requests are still refused after 5."""
    (b,) = backends(1)
    limit = RateLimit(requests=5, period=3600, key="route", redis=redis_server.url)
    gateway.set([simple_route(rate_limit=limit)], [b.instance()])
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            shared = [(await client.get("/whoami")).status_code for _ in range(8)]
            refused = await client.get("/whoami")
            redis_server.stop()
            local = [(await client.get("/whoami")).status_code for _ in range(8)]
        gate = gateway.proxy.table.routes["svc"].policy.c.gate
        assert gate.redis.stats.redis == 9 and gate.redis.stats.fallbacks == 1
    finally:
        await policy.close(gateway.proxy.table)
    assert shared == [200] * 5 + [429] * 3
    assert refused.headers["retry-after"] == "720"  # one token per 720 s
    assert refused.json()["error"]["code"] == "rate_limited"
    assert Counter(local) == {200: 5, 429: 3}


def test_two_workers_share_one_redis_limit(procs: ProcessGroup, tmp_path: Path, redis_server: RedisServer) -> None:
    """`python -m jishi.gateway --workers 2`: 60 requests on fresh connections (spread over both workers) admit
    the shared 20 (a decision Redis is too slow for on a loaded machine is made locally: a little slack); with
    Redis stopped each worker limits locally with its share (20 / 2 workers), so together they still admit at most
    the 20 (at least one worker's 10)."""
    backend = start_backend(procs, "b0")
    view = RegistryView()
    limit = RateLimit(requests=20, period=3600, key="route", redis=redis_server.url)
    view.routes["/jishi/routes/svc"] = simple_route("svc", rate_limit=limit)
    inst = backend.instance("svc")
    view.instances[inst.key] = inst
    SnapshotFile(tmp_path / "gw" / "snapshot.json").save(view.dump())
    port = free_port()
    dead_cp = f"http://127.0.0.1:{free_port()}"
    gw = procs.python("gateway", "-m", "jishi.gateway", "--control-plane", dead_cp, "--listen", f"127.0.0.1:{port}",
                      "--state-dir", str(tmp_path / "gw"), "--workers", "2")  # fmt: skip
    wait_for_port(port, timeout=30)
    deadline = time.monotonic() + 10
    while gw.log().count("listening on") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)

    def burst(n: int) -> Counter[int]:
        statuses: Counter[int] = Counter()
        for _ in range(n):  # a new connection each time, so the kernel spreads them over workers
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/whoami")
                statuses[conn.getresponse().status] += 1
            finally:
                conn.close()
        return statuses

    shared = burst(60)
    limiter_log = [line for line in gw.log().splitlines() if "rate limit" in line]
    assert 20 <= shared[200] <= 23 and shared[200] + shared[429] == 60, (shared, limiter_log)
    redis_server.stop()
    local = burst(60)
    assert 10 <= local[200] <= 20 and local[200] + local[429] == 60, local
    assert "deciding locally" in gw.log()


async def test_pipelined_requests_wait_their_turn_for_redis_and_shadow_mode_admits(
    gateway: GatewayUnderTest, backends, redis_server: RedisServer
) -> None:
    """Three pipelined requests on one connection under a Redis limit of 2 are answered in order (200, 200, 429);
    a shadow limit on Redis admits everything and counts the would-be refusals."""
    (b,) = backends(1)
    strict = simple_route(
        "strict", "/strict", rate_limit=RateLimit(requests=2, period=3600, key="route", redis=redis_server.url)
    )
    shadow = simple_route(
        "shadow",
        "/shadow",
        rate_limit=RateLimit(requests=1, period=3600, key="ip", redis=redis_server.url, shadow=True),
    )
    gateway.set([strict, shadow], [b.instance("strict"), b.instance("shadow")])
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(b"".join(b"GET /strict/whoami?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(3)))
        await writer.drain()
        statuses = []
        for _ in range(3):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            statuses.append((head.split(b" ")[1], b"i=" in body))
        writer.close()
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            shadowed = [(await client.get("/shadow/whoami")).status_code for _ in range(3)]
        state = gateway.proxy.table.routes["shadow"].policy.state()
    finally:
        await policy.close(gateway.proxy.table)
    assert statuses == [(b"200", True), (b"200", True), (b"429", False)]
    assert shadowed == [200] * 3
    assert (state["rate_limited"], state["rate_limit_shadowed"]) == (0, 2)
