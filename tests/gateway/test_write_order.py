"""Slow readers against real sockets: what the loop turn's writes (`jishi.gateway.writes`) and the route's total
timeout over the response body must not change.

Flow control: when one side cannot take bytes as fast as the other sends them, the gateway stops reading the
sender once the receiver's write buffer passes its high-water mark (`WRITE_HIGH`). The event loop reads a busy
socket many times in one turn (libuv: up to 32 reads), so bytes queued for the end of the turn would pile up to
megabytes before the receiver's transport could ask for a pause; the buffer size when the pause comes is what
the first two tests measure. A client too slow to take a response is no fault of the instance: when the route's
total timeout cuts such a response off, outlier detection must not count it against the instance.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

import pytest
from gateway_harness import GatewayUnderTest
from lb_harness import instance, start_faulty

from jishi.gateway.downstream import ClientConnection
from jishi.gateway.upstream import WRITE_HIGH, UpstreamConnection
from jishi.registry.model import Health, Instance, Route, RouteBackend
from jishi.testing import ProcessGroup

SIZE = 16 * 1024 * 1024
# The most a write buffer may hold when it asks for a pause: the high-water mark plus about two reads (before
# batching it was the mark plus one read, ~0.5 MiB). Unbounded batching reached 4-8 MiB.
BOUND = WRITE_HIGH + 768 * 1024


class Firehose(asyncio.Protocol):
    """An instance that answers any request with `SIZE` random bytes, all written at once."""

    body = os.urandom(SIZE)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.head = b""

    def data_received(self, data: bytes) -> None:
        self.head += data
        if b"\r\n\r\n" in self.head:
            self.head = b""
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % SIZE + self.body)  # type: ignore[attr-defined]


class Sink(asyncio.Protocol):
    """An instance that reads a request body slowly (a pause after every read) and answers with its SHA-256."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.head = b""
        self.got = 0
        self.length = -1
        self.digest = hashlib.sha256()

    def data_received(self, data: bytes) -> None:
        if self.length < 0:
            self.head += data
            if b"\r\n\r\n" not in self.head:
                return
            head, data = self.head.split(b"\r\n\r\n", 1)
            self.length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        self.got += len(data)
        self.digest.update(data)
        self.transport.pause_reading()
        asyncio.get_running_loop().call_later(0.002, self.transport.resume_reading)
        if self.got >= self.length:
            answer = self.digest.hexdigest().encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(answer) + answer)


@pytest.fixture
async def pauses(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[dict[str, list[int]]]:
    """The write buffer size each time a client or instance connection of the gateway asked for a pause."""
    seen: dict[str, list[int]] = {"client": [], "instance": []}
    client_pause, instance_pause = ClientConnection.pause_writing, UpstreamConnection.pause_writing

    def on_client(self: ClientConnection) -> None:
        assert self.transport is not None
        seen["client"].append(self.transport.get_write_buffer_size())
        client_pause(self)

    def on_instance(self: UpstreamConnection) -> None:
        assert self.transport is not None
        seen["instance"].append(self.transport.get_write_buffer_size())
        instance_pause(self)

    monkeypatch.setattr(ClientConnection, "pause_writing", on_client)
    monkeypatch.setattr(UpstreamConnection, "pause_writing", on_instance)
    yield seen


async def serve(gateway: GatewayUnderTest, protocol: type[asyncio.Protocol]) -> asyncio.Server:
    """An in-process instance on an ephemeral port, routed to for every path."""
    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    route = Route(name="svc", prefix="/", backends=[RouteBackend(service="svc")])
    gateway.set([route], [Instance(id="i", service="svc", port=port, health=Health.PASSING)])
    return server


async def test_a_slow_client_stops_the_instance_being_read_near_the_high_water_mark(
    gateway: GatewayUnderTest, pauses: dict[str, list[int]]
) -> None:
    """16 MiB sent at once by the instance to a client reading 64 KiB at a time: every byte arrives, and the
    client connection's write buffer holds at most the high-water mark and ~two reads when it asks for a pause."""
    server = await serve(gateway, Firehose)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port, limit=64 * 1024)
        writer.write(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        digest, got = hashlib.sha256(), 0
        while got < SIZE:
            data = await asyncio.wait_for(reader.read(64 * 1024), 10)
            assert data, "the gateway closed the connection"
            got += len(data)
            digest.update(data)
            await asyncio.sleep(0.0005)
        writer.close()
    finally:
        server.close()
    assert digest.digest() == hashlib.sha256(Firehose.body).digest()
    assert pauses["client"], "the client never filled its buffer: the test proves nothing"
    assert max(pauses["client"]) <= BOUND, pauses["client"]


async def test_a_slow_instance_stops_the_client_being_read_near_the_high_water_mark(
    gateway: GatewayUnderTest, pauses: dict[str, list[int]]
) -> None:
    """A 16 MiB request body sent at once to an instance that reads slowly: it arrives whole, and the instance
    connection's write buffer holds at most the high-water mark and ~two reads when it asks for a pause."""
    server = await serve(gateway, Sink)
    body = os.urandom(SIZE)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % SIZE + body)
        await asyncio.wait_for(writer.drain(), 30)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        answer = await asyncio.wait_for(reader.readexactly(64), 10)
        writer.close()
    finally:
        server.close()
    assert head.startswith(b"HTTP/1.1 200")
    assert answer == hashlib.sha256(body).hexdigest().encode()
    assert pauses["instance"], "the instance never filled its buffer: the test proves nothing"
    assert max(pauses["instance"]) <= BOUND, pauses["instance"]


async def test_a_response_cut_off_for_a_client_too_slow_to_read_it_does_not_eject_the_instance(
    gateway: GatewayUnderTest, procs: ProcessGroup, caplog: pytest.LogCaptureFixture
) -> None:
    """Total timeout 300 ms; a client asks for 32 MB and reads nothing for 1 s, so the gateway stops reading
    the instance: the response is cut off at the timeout, the log says why, and with one gateway error enough
    to eject, the instance is not ejected (it sent at once; the gateway held back)."""
    backend = start_faulty(procs, "b0")
    outlier = {"consecutive_5xx": 0, "consecutive_gateway_errors": 1, "max_ejection_percent": 100}
    spec = {"name": "svc", "backends": [{"service": "svc"}], "timeout": "300ms", "outlier": outlier}
    gateway.set([Route.model_validate(spec)], [instance(backend)])
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port, limit=64 * 1024)
    writer.write(b"GET /big?size=32000000 HTTP/1.1\r\nHost: t\r\n\r\n")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    await asyncio.sleep(1.0)
    got = 0
    while data := await asyncio.wait_for(reader.read(1024 * 1024), 10):
        got += len(data)
    writer.close()
    assert got < 32_000_000  # cut off (the route's timeout bounds the body too)
    assert gateway.proxy.table.routes["svc"].ejected() == []
    assert "did not end within the route's total timeout (the client was not reading it" in caplog.text
