"""Per-route rewriting through a real Proxy and backend: the path, request headers and response headers."""

from __future__ import annotations

import logging

import httpx
import pytest
from gateway_harness import GatewayUnderTest, simple_route

from jishi.gateway.policy_rewrite import RequestRewrite
from jishi.registry.policies import HeaderEdits, Rewrite


async def test_path_regex_rewrites_after_strip_prefix_and_keeps_the_query(gateway: GatewayUnderTest, backends) -> None:
    """/api/items/42?x=1 with strip_prefix and ^/items/(\\d+) → /v2/item?id=… reaches the instance with its query."""
    (b,) = backends(1)
    rewrite = Rewrite(path_regex=r"^/items/(\d+)", path=r"/v2/whoami/item-\1")
    gateway.set([simple_route("svc", "/api", strip_prefix=True, rewrite=rewrite)], [b.instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        moved = (await client.get("/api/items/42?x=1")).json()
        other = (await client.get("/api/whoami?y=2")).json()
    assert moved["path"] == "/v2/whoami/item-42?x=1"
    assert other["path"] == "/whoami?y=2"  # the regex does not match: unchanged


async def test_path_without_regex_replaces_the_whole_path(gateway: GatewayUnderTest, backends) -> None:
    """`path` alone replaces the whole path; the query stays."""
    (b,) = backends(1)
    gateway.set([simple_route(rewrite=Rewrite(path="/whoami"))], [b.instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        r = (await client.get("/anything/else?q=1")).json()
    assert r["path"] == "/whoami?q=1"


async def test_request_headers_set_add_remove(gateway: GatewayUnderTest, backends) -> None:
    """set replaces every line of the name, add appends, remove drops (case-insensitively); others are kept."""
    (b,) = backends(1)
    edits = HeaderEdits(set={"X-Tenant": "acme"}, add={"X-Tag": "gw"}, remove=["x-debug"])
    gateway.set([simple_route(rewrite=Rewrite(request_headers=edits))], [b.instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        r = await client.get(
            "/whoami", headers=[("X-Tenant", "evil"), ("X-Tag", "client"), ("X-Debug", "1"), ("X-Keep", "k")]
        )
    h = r.json()["headers"]
    assert h["x-tenant"] == "acme"
    assert h["x-tag"] == "client, gw"
    assert "x-debug" not in h
    assert h["x-keep"] == "k"
    assert h["x-forwarded-for"] == "127.0.0.1"


async def test_response_headers_set_add_remove(gateway: GatewayUnderTest, backends) -> None:
    """Response headers from the instance are edited before they reach the client; framing is untouched."""
    (b,) = backends(1)
    edits = HeaderEdits(set={"Content-Type": "text/plain"}, add={"Cache-Control": "no-store"}, remove=["x-echo-size"])
    gateway.set([simple_route(rewrite=Rewrite(response_headers=edits))], [b.instance()])
    async with httpx.AsyncClient(base_url=gateway.url) as client:
        r = await client.post("/echo", content=b"hello")
    assert r.content == b"hello"
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["cache-control"] == "no-store"
    assert "x-echo-size" not in r.headers
    assert r.headers["content-length"] == "5"


def test_managed_headers_cannot_be_edited(caplog: pytest.LogCaptureFixture) -> None:
    """Edits of Host or hop-by-hop headers are left out and logged; the other edits stay."""
    edits = HeaderEdits(set={"Host": "evil", "X-Ok": "1"}, remove=["Connection"])
    with caplog.at_level(logging.ERROR):
        rewrite = RequestRewrite(Rewrite(request_headers=edits), "svc")
    assert rewrite.edits is not None
    assert rewrite.edits.extra == [b"X-Ok", b": ", b"1", b"\r\n"]
    assert rewrite.edits.drop == frozenset({b"x-ok"})
    assert "cannot change Host" in caplog.text and "cannot remove Connection" in caplog.text
