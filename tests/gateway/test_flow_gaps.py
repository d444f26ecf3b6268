"""Flow control towards a slow client: the time the gateway holds an instance's response back does not count as
the instance's silence (the per-try read timeout), nor does the time a request body takes to arrive."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gateway_harness import GatewayUnderTest, simple_route
from timeout_harness import Streamer, small_window_client, streamer, wait_for

from jishi.gateway.proxy import Proxy
from jishi.registry.model import Route

BIG = 64 * 1024 * 1024


def route(name: str, prefix: str, **sections: Any) -> Route:
    return Route.model_validate(
        {"name": name, "prefix": prefix, "backends": [{"service": name}], "lb": {"policy": "round_robin"}, **sections}
    )


@pytest.fixture
async def short_read_timeout() -> AsyncIterator[tuple[GatewayUnderTest, Streamer]]:
    """/svc on one streaming instance, with a 0.3 s per-try read timeout."""
    async with streamer("streamer") as s:
        proxy = Proxy()
        gw = GatewayUnderTest(proxy, await proxy.start("127.0.0.1", 0))
        gw.set([route("svc", "/svc", read_timeout=0.3)], [s.instance("svc")])
        try:
            yield gw, s
        finally:
            await proxy.stop(grace=0.5)


async def test_time_the_gateway_holds_reading_back_is_not_the_instances_silence(
    short_read_timeout: tuple[GatewayUnderTest, Streamer],
) -> None:
    """An instance streaming 1.5 MB (64 KiB every 10 ms) to a client reading 16 KiB every 50 ms: the gateway stops
    reading the instance for seconds at a time, far past the 0.3 s read timeout, and the whole body still
    arrives (the instance was never silent while it was being read)."""
    gw, instance = short_read_timeout
    size = 1536 * 1024
    reader, writer = await small_window_client(gw.port, rcvbuf=16384)
    try:
        await wait_for(lambda: gw.proxy.clients, 2.0)
        (client,) = gw.proxy.clients
        assert client.transport is not None
        # A small kernel send buffer on the gateway's side (as on a slow link): the client's slowness reaches the
        # gateway's write buffer at once instead of after the megabytes a loopback socket would take.
        client.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        writer.write(b"GET /svc/stream/%d/65536/10 HTTP/1.1\r\nHost: a\r\n\r\n" % size)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        assert head.startswith(b"HTTP/1.1 200 "), head
        got = 0
        while got < size:
            data = await asyncio.wait_for(reader.read(16384), 5.0)
            assert data, f"the response was cut off after {got} of {size} bytes"
            got += len(data)
            await asyncio.sleep(0.05)
    finally:
        writer.close()
    assert got == size and not instance.dropped.is_set()


async def test_a_slow_but_moving_upload_is_not_cut_by_the_read_timeout(
    gateway: GatewayUnderTest, backends: Any
) -> None:
    """`read_timeout` is the wait for the response head (docs/configuration.md), and a body may take as long as it
    keeps moving (`body_timeout`): a 2.4 s upload on a route with a 1 s read timeout is answered 200, not 504."""
    (b,) = backends(1)
    gateway.set([simple_route(read_timeout=1.0)], [b.instance()])
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nContent-Length: 12\r\n\r\n")
        for _ in range(12):  # a byte every 0.2 s: the body keeps moving
            if reader.at_eof() or writer.is_closing():
                break
            try:
                writer.write(b"x")
                await writer.drain()
            except ConnectionError:
                break
            await asyncio.sleep(0.2)
        try:
            response = await asyncio.wait_for(reader.read(-1), 5.0)
        except ConnectionError:
            response = bytes(reader._buffer)  # what arrived before the reset
    finally:
        writer.close()
    assert response.split(b"\r\n", 1)[0] == b"HTTP/1.1 200 OK", response[:300]
