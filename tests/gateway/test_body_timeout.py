"""The body timeout: a request body that stops arriving is answered 408 and its connections dropped; a body
that keeps moving, however slowly, is not cut."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from gateway_harness import GatewayUnderTest, simple_route, start_backend
from test_hardening import send_raw, status_and_body, still_serves

from jishi.gateway.proxy import Proxy
from jishi.registry.model import Health, Instance
from jishi.testing import ProcessGroup

BODY_TIMEOUT = 0.3
# The housekeeping looks every 0.5 s: a stall is seen at most one look late, and cut at the look after.
LATEST = BODY_TIMEOUT + 1.0 + 0.5


@dataclass
class Sink:
    """An instance that reads requests and never answers; it notes when the gateway drops its connection."""

    port: int = 0
    received: bytearray = field(default_factory=bytearray)
    dropped: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            self.received += data
        self.dropped.set()
        writer.close()


@pytest.fixture
async def slow(procs: ProcessGroup) -> AsyncIterator[tuple[GatewayUnderTest, Sink]]:
    """A proxy with a 0.3 s body timeout: /sink goes to a silent in-process instance, the rest to a backend."""
    sink = Sink()
    server = await asyncio.start_server(sink.handle, "127.0.0.1", 0)
    sink.port = server.sockets[0].getsockname()[1]
    proxy = Proxy(body_timeout=BODY_TIMEOUT, header_timeout=5.0)
    gw = GatewayUnderTest(proxy, await proxy.start("127.0.0.1", 0))
    backend = start_backend(procs, "b0")
    sink_instance = Instance(id="sink", service="sink", port=sink.port, health=Health.PASSING)
    gw.set([simple_route(), simple_route("sink", "/sink")], [backend.instance(), sink_instance])
    try:
        yield gw, sink
    finally:
        await proxy.stop(grace=1.0)
        server.close()
        await server.wait_closed()


async def timed(port: int, *pieces: bytes) -> tuple[bytes, float]:
    """Send `pieces` on a new connection, then read until the gateway closes it; also how long that took."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    response = await send_raw(port, *pieces)
    return response, loop.time() - t0


async def test_stalled_body_is_answered_408_and_the_instance_connection_dropped(
    slow: tuple[GatewayUnderTest, Sink],
) -> None:
    """Content-Length 100 with 10 bytes sent, then silence: 408 JSON naming the limit, closed, instance dropped."""
    gw, sink = slow
    head = b"POST /sink/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
    response, waited = await timed(gw.port, head + b"0123456789")
    status, body = status_and_body(response)
    assert (status, body["error"]["code"]) == (408, "request_timeout"), response  # type: ignore[index]
    assert "0.3 s" in body["error"]["message"]  # type: ignore[index]
    assert b"Connection: close" in response
    assert BODY_TIMEOUT <= waited <= LATEST
    await asyncio.wait_for(sink.dropped.wait(), 2.0)
    assert sink.received.endswith(b"0123456789")  # the instance had the request, then lost it
    await still_serves(gw.port)


async def test_stalled_chunked_body_is_answered_408(slow: tuple[GatewayUnderTest, Sink]) -> None:
    """A chunked body that never sends its last chunk is cut like one with a Content-Length."""
    gw, _ = slow
    head = b"POST /sink/upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    response, waited = await timed(gw.port, head + b"5\r\nhello\r\n")
    assert status_and_body(response)[0] == 408
    assert BODY_TIMEOUT <= waited <= LATEST


async def test_body_trickling_faster_than_the_timeout_is_not_cut(slow: tuple[GatewayUnderTest, Sink]) -> None:
    """A body sent one byte every 0.1 s, 2 s in all (far past the 0.3 s timeout), reaches the instance whole."""
    gw, _ = slow
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 20\r\nConnection: close\r\n\r\n")
        for i in range(20):
            await asyncio.sleep(0.1)
            writer.write(b"%d" % (i % 10))
            await writer.drain()
        response = await asyncio.wait_for(reader.read(-1), 5.0)
    finally:
        writer.close()
    assert response.startswith(b"HTTP/1.1 200 "), response[:300]
    assert response.endswith(b"01234567890123456789")


async def test_a_slow_body_does_not_affect_other_clients(slow: tuple[GatewayUnderTest, Sink]) -> None:
    """While one client's body stalls until it is cut, other clients are served at once."""
    gw, _ = slow
    head = b"POST /sink/upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
    stalled = asyncio.create_task(timed(gw.port, head + b"x"))
    try:
        for _ in range(3):
            await still_serves(gw.port)
        assert not stalled.done()
        response, _ = await stalled
    finally:
        stalled.cancel()
    assert status_and_body(response)[0] == 408


async def test_body_after_an_early_answer_that_stalls_closes_without_a_second_response(
    slow: tuple[GatewayUnderTest, Sink],
) -> None:
    """A request answered before its body (no route: 404) whose body then stalls is closed, not answered twice."""
    gw, _ = slow
    gw.set([simple_route("sink", "/sink")], [i for i in gw.instances if i.id == "sink"])
    head = b"POST /nowhere HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"
    response, waited = await timed(gw.port, head + b"x")
    assert response.startswith(b"HTTP/1.1 404 "), response[:300]
    assert response.count(b"HTTP/1.1 ") == 1
    assert BODY_TIMEOUT <= waited <= LATEST
