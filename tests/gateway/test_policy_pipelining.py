"""Requests the gateway answers itself, on a connection that goes on: pipelined refusals answered in order, and
refused upgrade requests that end their connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route
from policy_harness import read_statuses

from jishi.gateway import policy
from jishi.registry.policies import RateLimit


@pytest.fixture
async def gw(gateway: GatewayUnderTest) -> AsyncIterator[GatewayUnderTest]:
    """The in-process gateway whose route policies are closed at the end."""
    yield gateway
    await policy.close(gateway.proxy.table)


@pytest.mark.parametrize("limited", [True, False], ids=["rate-limited", "no-route"])
async def test_400_pipelined_refusals_all_answered(gw: GatewayUnderTest, backends, limited: bool) -> None:
    """400 requests pipelined behind a slow one, each refused at once (429 or 404), all get their answer in order."""
    (b,) = backends(1)
    if limited:
        gw.set([simple_route(rate_limit=RateLimit(requests=1, period=60, key="route"))], [b.instance()])
        first, rest, status = b"/sleep?s=0.3", b"/whoami", 429
    else:
        gw.set([simple_route(prefix="/ok")], [b.instance()])
        first, rest, status = b"/ok/sleep?s=0.3", b"/nope", 404
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        n = 400
        writer.write(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % first + b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % rest * n)
        got = await read_statuses(reader, n + 1)
    finally:
        writer.close()
    assert got == [200] + [status] * n


async def test_refused_upgrade_request_closes_the_connection(gw: GatewayUnderTest, backends) -> None:
    """An upgrade request the policy refuses (429) is answered with Connection: close and the connection ends,
    since nothing after its head is read."""
    (b,) = backends(1)
    gw.set([simple_route(rate_limit=RateLimit(requests=1, period=60, key="route"))], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        assert (await client.get("/whoami")).status_code == 200
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 429") and b"connection: close" in head.lower()
        n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(n)
        assert await asyncio.wait_for(reader.read(100), 3) == b""  # closed, not left hanging
    finally:
        writer.close()


async def test_unroutable_upgrade_request_closes_the_connection(gw: GatewayUnderTest, backends) -> None:
    """An upgrade request answered with an error by the gateway (404) also ends its connection."""
    (b,) = backends(1)
    gw.set([simple_route(prefix="/ok")], [b.instance()])
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 404") and b"connection: close" in head.lower()
        n = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(n)
        assert await asyncio.wait_for(reader.read(100), 3) == b""
    finally:
        writer.close()
