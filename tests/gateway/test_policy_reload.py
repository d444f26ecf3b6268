"""Editing a route's policy sections (a config reload) drops no request its old policy holds: real backends on
127.0.0.1."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route

from jishi.gateway import policy
from jishi.registry.policies import BulkheadPolicy


@pytest.fixture
async def gw(gateway: GatewayUnderTest) -> AsyncIterator[GatewayUnderTest]:
    """The in-process gateway whose route policies are closed at the end."""
    yield gateway
    await policy.close(gateway.proxy.table)


async def test_a_request_queued_in_the_bulkhead_survives_a_config_reload(gw: GatewayUnderTest, backends) -> None:
    """A request waiting in a route's bulkhead queue when the bulkhead is re-tuned is served once a slot frees."""
    (b,) = backends(1)
    gw.set([simple_route(bulkhead=BulkheadPolicy(max_concurrent=1, max_queue=4, max_wait=5))], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as client:
        first = asyncio.create_task(client.get("/sleep?s=0.6"))
        await asyncio.sleep(0.15)
        queued = asyncio.create_task(client.get("/whoami"))
        await asyncio.sleep(0.15)
        t0 = time.monotonic()
        gw.set([simple_route(bulkhead=BulkheadPolicy(max_concurrent=2, max_queue=4, max_wait=5))], [b.instance()])
        waited = await queued
        elapsed = time.monotonic() - t0
        assert (await first).status_code == 200
    assert waited.status_code == 200, f"after {elapsed:.2f} s: {waited.status_code} {waited.text}"
