"""Failures around the route policy chain are answered: a gateway bug after a request was held (in a bulkhead's
queue, behind a pipelined request) gets 500 internal_error, a route whose policy cannot be built gets 503."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route
from policy_harness import read_statuses

from jishi.gateway import dispatch, policy
from jishi.registry.policies import AdaptiveConcurrency, BulkheadPolicy, RateLimit


@pytest.fixture
async def gw(gateway: GatewayUnderTest) -> AsyncIterator[GatewayUnderTest]:
    """The in-process gateway whose route policies are closed at the end."""
    yield gateway
    await policy.close(gateway.proxy.table)


@pytest.fixture
def boom(monkeypatch: pytest.MonkeyPatch) -> None:
    """`dispatch.proceed` fails for paths under /boom, as a bug of the gateway's would."""
    real = dispatch.proceed

    def proceed(client: Any, ex: Any, now: float) -> None:
        if ex.url.startswith(b"/boom"):
            raise RuntimeError("a bug")
        real(client, ex, now)

    monkeypatch.setattr(dispatch, "proceed", proceed)


@pytest.mark.usefixtures("boom")
async def test_failure_after_a_bulkhead_wait_is_answered_500(gw: GatewayUnderTest, backends, caplog) -> None:
    """A request that fails once its bulkhead slot comes is answered 500 internal_error, and frees its slot."""
    (b,) = backends(1)
    gw.set([simple_route(bulkhead=BulkheadPolicy(max_concurrent=1, max_queue=1, max_wait=5))], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url, timeout=5) as client:
        first = asyncio.create_task(client.get("/sleep?s=0.3"))
        await asyncio.sleep(0.1)
        r = await client.get("/boom")
        assert (await first).status_code == 200
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert (await client.get("/whoami")).status_code == 200
    pol = gw.proxy.table.routes["svc"].policy
    assert pol is not None and pol.c.bulkhead is not None and pol.c.bulkhead.active == 0
    assert any(rec.exc_info and "route 'svc'" in rec.getMessage() for rec in caplog.records)


@pytest.mark.usefixtures("boom")
async def test_failure_starting_a_pipelined_request_is_answered_500(gw: GatewayUnderTest, backends) -> None:
    """A pipelined request whose start fails (called from the previous one's finish) is answered 500."""
    (b,) = backends(1)
    gw.set([simple_route()], [b.instance()])
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"GET /sleep?s=0.2 HTTP/1.1\r\nHost: x\r\n\r\nGET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        writer.write(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await read_statuses(reader, 3) == [200, 500, 200]
    finally:
        writer.close()


async def test_route_whose_policy_cannot_be_built_is_refused(gw: GatewayUnderTest, backends, caplog) -> None:
    """A section that fails to build (here a concurrency limit out of order) refuses the route with 503
    policy_error and logs an ERROR naming route and section, instead of serving the route without its limits."""
    (b,) = backends(1)
    bad = AdaptiveConcurrency.model_construct(algorithm="aimd", initial_limit=50, min_limit=1, max_limit=10)
    route = simple_route(rate_limit=RateLimit(requests=100, period=1, key="route")).model_copy(
        update={"concurrency": bad}
    )
    gw.set([route], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        r = await client.get("/whoami")
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "policy_error" and "concurrency" in r.json()["error"]["message"]
    errors = [rec.getMessage() for rec in caplog.records if rec.levelname == "ERROR"]
    assert any("route svc" in m and "concurrency" in m for m in errors)
