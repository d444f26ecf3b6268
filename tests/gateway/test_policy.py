"""The route policy chain through a real Proxy and real backends: rate limits, adaptive concurrency, bulkhead,
fallback, route state and keeping policies across routing tables."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route

from jishi.gateway import policy
from jishi.registry.policies import AdaptiveConcurrency, BulkheadPolicy, Fallback, RateLimit


@pytest.fixture
async def gw(gateway: GatewayUnderTest) -> AsyncIterator[GatewayUnderTest]:
    """The in-process gateway whose route policies are closed at the end."""
    yield gateway
    await policy.close(gateway.proxy.table)


async def test_rate_limit_answers_429_with_exact_retry_after(gw: GatewayUnderTest, backends) -> None:
    """A token bucket of 2 per 10 s admits 2, then answers 429 with Retry-After 5 and the exact wait in the body."""
    (b,) = backends(1)
    gw.set([simple_route(rate_limit=RateLimit(requests=2, period=10, key="route"))], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        t0 = time.monotonic()
        first = [(await client.get("/whoami")).status_code for _ in range(2)]
        refused = await client.get("/whoami")
        elapsed = time.monotonic() - t0
    assert first == [200, 200]
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "5"
    error = refused.json()["error"]
    assert error["code"] == "rate_limited"
    assert 5 - elapsed - 0.01 <= error["retry_after"] <= 5.0
    assert "2 requests per 10 s" in error["message"]


async def test_gcra_retry_after_rounds_up_to_whole_seconds(gw: GatewayUnderTest, backends) -> None:
    """GCRA at 1 per 2.5 s without burst: the second request waits ~2.5 s, announced as Retry-After 3."""
    (b,) = backends(1)
    gw.set([simple_route(rate_limit=RateLimit(algorithm="gcra", requests=1, period=2.5))], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        assert (await client.get("/whoami")).status_code == 200
        refused = await client.get("/whoami")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "3"
    assert 2.3 < refused.json()["error"]["retry_after"] <= 2.5


@pytest.mark.parametrize("algorithm", ["token_bucket", "gcra", "sliding_window", "fixed_window", "leaky_bucket"])
async def test_each_algorithm_admits_its_limit_per_key(gw: GatewayUnderTest, backends, algorithm: str) -> None:
    """Keyed by a header, every algorithm admits 3 of 5 quick requests per key value, independently per key."""
    (b,) = backends(1)
    limit = RateLimit(algorithm=algorithm, requests=3, period=30, key="header:X-Api-Key")  # type: ignore[arg-type]
    gw.set([simple_route(rate_limit=limit)], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        statuses = {
            key: [(await client.get("/whoami", headers={"X-Api-Key": key})).status_code for _ in range(5)]
            for key in ("alice", "bob")
        }
    assert statuses == {"alice": [200] * 3 + [429] * 2, "bob": [200] * 3 + [429] * 2}


async def test_cookie_key_and_shadow_mode(gw: GatewayUnderTest, backends) -> None:
    """Keyed by a cookie, limits are per cookie value; in shadow mode nothing is refused but refusals are counted."""
    (b,) = backends(1)
    a, s = simple_route("a", "/a"), simple_route("s", "/s")
    a = a.model_copy(update={"rate_limit": RateLimit(requests=1, period=60, key="cookie:session")})
    s = s.model_copy(update={"rate_limit": RateLimit(requests=1, period=60, key="route", shadow=True)})
    gw.set([a, s], [b.instance("a"), b.instance("s")])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        one = [(await client.get("/a/whoami", headers={"Cookie": "x=1; session=one"})).status_code for _ in range(2)]
        two = (await client.get("/a/whoami", headers={"Cookie": "session=two"})).status_code
        shadow = [(await client.get("/s/whoami")).status_code for _ in range(4)]
    assert one == [200, 429] and two == 200
    assert shadow == [200] * 4
    state = gw.proxy.table.routes["s"].policy.state()
    assert (state["rate_limited"], state["rate_limit_shadowed"]) == (0, 3)


async def test_adaptive_concurrency_sheds_over_its_limit(gw: GatewayUnderTest, backends) -> None:
    """With an adaptive limit pinned at 1, a second concurrent request is shed with 503 overloaded."""
    (b,) = backends(1)
    limit = AdaptiveConcurrency(algorithm="aimd", initial_limit=1, min_limit=1, max_limit=1)
    gw.set([simple_route(concurrency=limit)], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        slow = asyncio.create_task(client.get("/sleep?s=0.5"))
        await asyncio.sleep(0.15)
        shed = await client.get("/whoami")
        assert (await slow).status_code == 200
        after = await client.get("/whoami")
    assert shed.status_code == 503 and shed.json()["error"]["code"] == "overloaded"
    assert after.status_code == 200
    assert gw.proxy.table.routes["svc"].policy.state()["shed"] == 1


async def test_bulkhead_queues_then_times_out_then_rejects(gw: GatewayUnderTest, backends) -> None:
    """One slot and a queue of one waiting 0.3 s: the queued request gets 503 bulkhead_full after 0.3 s, a third
    is refused at once; with a longer wait the queued one is served after the first."""
    (b,) = backends(1)
    gw.set([simple_route(bulkhead=BulkheadPolicy(max_concurrent=1, max_queue=1, max_wait=0.3))], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        first = asyncio.create_task(client.get("/sleep?s=0.8"))
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        queued = asyncio.create_task(client.get("/whoami"))
        await asyncio.sleep(0.05)
        third = await client.get("/whoami")
        assert third.status_code == 503 and time.monotonic() - t0 < 0.25
        waited = await queued
        assert 0.28 <= time.monotonic() - t0 < 0.6
        assert waited.status_code == 503 and waited.json()["error"]["code"] == "bulkhead_full"
        assert (await first).status_code == 200

    gw.set([simple_route(bulkhead=BulkheadPolicy(max_concurrent=1, max_queue=1, max_wait=2))], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        first = asyncio.create_task(client.get("/sleep?s=0.4"))
        await asyncio.sleep(0.1)
        second = await client.get("/whoami")
        assert second.status_code == 200
        assert (await first).status_code == 200
    assert gw.proxy.table.routes["svc"].policy.c.bulkhead.active == 0


async def test_fallback_answers_instead_of_the_error(gw: GatewayUnderTest, backends) -> None:
    """A route without a healthy instance answers with its configured fallback (status, body, content type)."""
    fallback = Fallback(status=200, body='{"items": []}', content_type="application/json", on=["no_instance"])
    gw.set([simple_route(fallback=fallback)], [])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        r = await client.get("/items")
        head = await client.head("/items")
    assert r.status_code == 200
    assert r.json() == {"items": []}
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-jishi-fallback"] == "no_instance"
    assert head.status_code == 200 and head.content == b""


async def test_fallback_for_rate_limited_only_when_listed(gw: GatewayUnderTest, backends) -> None:
    """A 429 becomes the fallback only when `rate_limited` is among its reasons."""
    (b,) = backends(1)
    limit = RateLimit(requests=1, period=60, key="route")
    listed = simple_route("l", "/l", rate_limit=limit, fallback=Fallback(status=503, body="busy", on=["rate_limited"]))
    unlisted = simple_route("u", "/u", rate_limit=limit, fallback=Fallback(body="x"))
    gw.set([listed, unlisted], [b.instance("l"), b.instance("u")])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        lr = [await client.get("/l/whoami") for _ in range(2)]
        ur = [await client.get("/u/whoami") for _ in range(2)]
    assert (lr[1].status_code, lr[1].text) == (503, "busy")
    assert ur[1].status_code == 429


async def test_policy_is_kept_while_the_route_is_unchanged(gw: GatewayUnderTest, backends) -> None:
    """A new table with the same route record keeps the policy (and its limiter state); a changed record gets a
    new one; a route without sections has none."""
    b0, b1 = backends(2)
    route = simple_route(rate_limit=RateLimit(requests=1, period=60, key="route"))
    gw.set([route, simple_route("plain", "/plain")], [b0.instance()])
    kept = gw.proxy.table.routes["svc"].policy
    assert gw.proxy.table.routes["plain"].policy is None
    async with httpx.AsyncClient(base_url=gw.url) as client:
        assert (await client.get("/whoami")).status_code == 200
        gw.set([route], [b0.instance(), b1.instance()])
        assert gw.proxy.table.routes["svc"].policy is kept
        assert (await client.get("/whoami")).status_code == 429
        gw.set([route.model_copy(update={"rate_limit": RateLimit(requests=5, period=60)})], [b0.instance()])
        assert gw.proxy.table.routes["svc"].policy is not kept
        assert (await client.get("/whoami")).status_code == 200


async def test_a_client_leaving_the_bulkhead_queue_gives_its_place_back(gw: GatewayUnderTest, backends) -> None:
    """A queued request whose client disconnects leaves the queue; the slot goes to the next live waiter, and
    at the end nothing is held."""
    (b,) = backends(1)
    gw.set([simple_route(bulkhead=BulkheadPolicy(max_concurrent=1, max_queue=2, max_wait=5))], [b.instance()])
    bulkhead = gw.proxy.table.routes["svc"].policy.c.bulkhead
    async with httpx.AsyncClient(base_url=gw.url) as client:
        first = asyncio.create_task(client.get("/sleep?s=0.5"))
        await asyncio.sleep(0.1)
        _, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        third = asyncio.create_task(client.get("/whoami"))
        await asyncio.sleep(0.05)
        assert bulkhead.waiting == 2
        writer.close()
        await writer.wait_closed()
        await asyncio.sleep(0.05)
        assert bulkhead.waiting == 1
        assert (await first).status_code == 200
        assert (await third).status_code == 200
    assert (bulkhead.active, bulkhead.waiting) == (0, 0)


async def test_a_refused_request_with_a_body_keeps_the_connection(gw: GatewayUnderTest, backends) -> None:
    """A POST refused with 429 before its body was read: the body is skipped and the next request on the same
    connection is served."""
    (b,) = backends(1)
    gw.set([simple_route(rate_limit=RateLimit(requests=1, period=60, key="route"))], [b.instance()])
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        body = b"x" * 5000
        request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        writer.write(request + request)
        await writer.drain()
        answers = []
        for _ in range(2):
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            answers.append((head.split(b" ")[1], await reader.readexactly(length)))
    finally:
        writer.close()
    assert answers[0] == (b"200", body)
    assert answers[1][0] == b"429" and b"rate_limited" in answers[1][1]
