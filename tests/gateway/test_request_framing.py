"""Request framing the gateway keeps whatever the client says: headers it manages survive a Connection header
naming them, a Content-Length with whitespace still meets the body limit, a chunked body's trailers are bounded
like a head, and HTTP/1.0 requests get neither a protocol switch nor a 100 Continue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from gateway_harness import GatewayUnderTest, simple_route, start_backend
from raw_instance import exchange, raw_gateway

from jishi.gateway.proxy import Proxy
from jishi.testing import ProcessGroup

MAX_HEAD = 4096


@pytest.fixture
async def strict(procs: ProcessGroup) -> AsyncIterator[GatewayUnderTest]:
    """A proxy with 4 KiB heads and a 2 s body timeout over one test backend."""
    proxy = Proxy(max_head_size=MAX_HEAD, header_timeout=2.0, body_timeout=2.0)
    port = await proxy.start("127.0.0.1", 0)
    gw = GatewayUnderTest(proxy, port)
    backend = start_backend(procs, "b0")
    gw.set([simple_route()], [backend.instance()])
    try:
        yield gw
    finally:
        await proxy.stop(grace=1.0)


async def test_connection_naming_content_length_cannot_smuggle_a_request(gateway: GatewayUnderTest) -> None:
    """A request whose Connection header names Content-Length reaches the instance with its body framed (or is
    refused); the instance must not see the body as a second request the gateway never routed."""
    inst = await raw_gateway(gateway, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    smuggled = b"DELETE /admin/everything HTTP/1.1\r\nHost: internal\r\n\r\n"
    request = (
        b"POST /upload HTTP/1.1\r\nHost: a\r\nConnection: close, content-length\r\nContent-Length: %d\r\n\r\n%s"
        % (len(smuggled), smuggled)
    )
    try:
        await exchange(gateway.port, request)
        await asyncio.sleep(0.2)
        assert [h.split(b"\r\n")[0] for h in inst.heads] == [b"POST /upload HTTP/1.1"], inst.heads
    finally:
        await inst.stop()


async def test_connection_naming_host_keeps_the_host_header(gateway: GatewayUnderTest) -> None:
    """`Connection: host` must not make the gateway send an HTTP/1.1 request without Host to the instance."""
    inst = await raw_gateway(gateway, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    try:
        await exchange(gateway.port, b"GET / HTTP/1.1\r\nHost: a.example\r\nConnection: close, host\r\n\r\n")
        head = inst.heads[0].lower()
        assert head.startswith(b"get / http/1.1\r\n")
        assert b"\r\nhost: " in head, head
    finally:
        await inst.stop()


async def test_oversize_trailer_is_refused(strict: GatewayUnderTest) -> None:
    """A chunked request's trailer section is bounded like a head (431 or 400 and close), not read into memory
    without end: here one trailer field of 4 MiB against a 4 KiB head limit."""
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.port)
    try:
        head = b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
        writer.write(head + b"5\r\nhello\r\n0\r\nX-T: ")
        piece = b"t" * 65536
        sent = 0
        refused_early = False
        for _ in range(64):  # 4 MiB, a thousand times the head limit
            if reader.at_eof() or writer.is_closing():
                refused_early = True
                break
            try:
                writer.write(piece)
                await writer.drain()
            except ConnectionError:
                refused_early = True
                break
            sent += len(piece)
        if not refused_early:
            writer.write(b"\r\n\r\n")
            await writer.drain()
        response = await asyncio.wait_for(reader.read(-1), 10.0)
    finally:
        writer.close()
    status = int(response.split(b" ", 2)[1]) if response else 0
    assert 400 <= status < 500, f"after {sent} trailer bytes the gateway answered {response[:120]!r}"


async def test_content_length_with_trailing_space_still_gets_the_body_limit(procs: ProcessGroup) -> None:
    """`max_body_size`: a larger Content-Length is refused with 413 at once (`jishi.gateway.limits`). llhttp
    accepts `Content-Length: 20000 ` (trailing whitespace); the limit must apply to it as to `20000`."""
    proxy = Proxy(max_body_size=10_000)
    port = await proxy.start("127.0.0.1", 0)
    gw = GatewayUnderTest(proxy, port)
    gw.set([simple_route()], [start_backend(procs, "b0").instance()])
    try:
        plain = await exchange(port, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 20000\r\n\r\n")
        assert plain.startswith(b"HTTP/1.1 413 "), plain[:100]
        head = b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 20000 \r\n\r\n"
        spaced = await exchange(port, head + b"z" * 20000)
        assert spaced.startswith(b"HTTP/1.1 413 "), spaced[:200]
    finally:
        await proxy.stop(grace=0.5)


async def test_an_http10_upgrade_request_is_not_switched(gateway: GatewayUnderTest) -> None:
    """RFC 9110 §7.8: a server must ignore Upgrade in an HTTP/1.0 request; the gateway must not forward it (as an
    HTTP/1.1 upgrade) and open a tunnel for an HTTP/1.0 client."""
    inst = await raw_gateway(gateway, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    try:
        request = b"GET /ws HTTP/1.0\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        await exchange(gateway.port, request)
    finally:
        await inst.stop()
    assert b"upgrade: websocket" not in inst.heads[0].lower(), inst.heads[0]


async def test_no_100_continue_to_an_http10_client(gateway: GatewayUnderTest, backends) -> None:
    """RFC 9110 §10.1.1: a server must not send a 100 (Continue) to an HTTP/1.0 client; the gateway answers
    only the final response."""
    (b,) = backends(1)
    gateway.set([simple_route()], [b.instance()])
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(b"POST /echo HTTP/1.0\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.write(b"hello")
        await writer.drain()
        response = await asyncio.wait_for(reader.read(-1), 5.0)
    finally:
        writer.close()
    assert not response.startswith(b"HTTP/1.1 100"), response[:80]
    assert b" 200 " in response.split(b"\r\n", 1)[0]


async def test_many_small_chunks_and_short_trailers_are_not_mistaken_for_oversize_framing(
    strict: GatewayUnderTest,
) -> None:
    """5000 one-byte chunks (five framing bytes to each byte of data, 25 kB against a 4 KiB head limit) with
    chunk extensions and a short trailer field go through whole."""
    body = b"".join(b"1;ext=v\r\n%c\r\n" % (97 + i % 26) for i in range(5000)) + b"0\r\nX-Checksum: abc\r\n\r\n"
    head = b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.port)
    try:
        writer.write(head)
        for i in range(0, len(body), 1000):  # in many reads, as a slow client sends it
            writer.write(body[i : i + 1000])
            await writer.drain()
            await asyncio.sleep(0.001)
        response = await asyncio.wait_for(reader.read(-1), 10.0)
    finally:
        writer.close()
    assert response.startswith(b"HTTP/1.1 200 "), response[:200]
    assert response.partition(b"\r\n\r\n")[2] == bytes(97 + i % 26 for i in range(5000))  # the echo of the data
