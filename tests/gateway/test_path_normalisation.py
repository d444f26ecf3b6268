"""Dot segments and merged slashes through a real Proxy and backend process on 127.0.0.1: a request is routed by
its normalised path (so `..` cannot lead it around a route's policies), the instance receives that path, and a
path that climbs above the root is refused with 400 JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route

from jishi.gateway import policy
from jishi.registry.policies import RateLimit


@pytest.fixture
async def gw(gateway: GatewayUnderTest) -> AsyncIterator[GatewayUnderTest]:
    """The in-process gateway whose route policies are closed at the end."""
    yield gateway
    await policy.close(gateway.proxy.table)


async def raw_get(port: int, target: bytes) -> bytes:
    """The whole response to `GET target` sent byte for byte (no client-side normalisation)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        return await asyncio.wait_for(reader.read(-1), 5.0)
    finally:
        writer.close()


async def test_dot_segments_cannot_route_around_a_routes_policy(gw: GatewayUnderTest, backends) -> None:
    """`/api/catalog/../../admin/whoami` names the `/admin` route's path (RFC 3986 §5.2.4, as the instance resolves
    it): it is routed there, so the admin route's spent rate limit refuses it rather than `/api/catalog` serving it."""
    (b,) = backends(1)
    api = simple_route("api", "/api/catalog", service="svc")
    admin = simple_route("admin", "/admin", service="svc", rate_limit=RateLimit(requests=1, period=60, key="route"))
    gw.set([api, admin], [b.instance()])
    async with httpx.AsyncClient(base_url=gw.url) as client:
        assert (await client.get("/admin/whoami")).status_code == 200
        assert (await client.get("/admin/whoami")).status_code == 429  # the admin route's limit: spent
    for target in (b"/api/catalog/../../admin/whoami", b"/api/catalog/%2e%2e/%2E%2E/admin/whoami", b"//admin/whoami"):
        response = await raw_get(gw.port, target)
        assert response.split(b" ", 2)[1] == b"429", response[:400]


async def test_the_instance_receives_the_normalised_path(gw: GatewayUnderTest, backends) -> None:
    """Dot segments, `%2e` and doubled slashes are resolved before the request is sent: the instance sees the path
    the gateway routed, with the query string as sent."""
    (b,) = backends(1)
    gw.set([simple_route("svc", "/")], [b.instance()])
    response = await raw_get(gw.port, b"/x/./y//../%2e%2e/whoami?q=/../z")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response[:400]
    assert json.loads(body)["path"] == "/whoami?q=/../z"


async def test_a_path_above_the_root_is_refused_with_400(gw: GatewayUnderTest, backends) -> None:
    """A path whose `..` segments climb above the root is answered 400 with a JSON error, never forwarded."""
    (b,) = backends(1)
    gw.set([simple_route("svc", "/")], [b.instance()])
    response = await raw_get(gw.port, b"/a/../../etc/passwd")
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), response[:400]
    error = json.loads(body)["error"]
    assert error["code"] == "bad_request" and "climbs above the root" in error["message"]
