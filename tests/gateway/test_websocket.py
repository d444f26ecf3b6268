"""WebSocket through the gateway: the upgrade is forwarded, a 101 turns both connections into a byte pipe."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from gateway_harness import GatewayUnderTest, simple_route, start_backend
from ws_backend import accept_key, frame, read_frame

from jishi.gateway.tunnel import Tunnel
from jishi.registry.model import Health, Instance
from jishi.testing import ProcessGroup, free_port, wait_for_port

WS_BACKEND = str(Path(__file__).with_name("ws_backend.py"))


def start_ws_backend(procs: ProcessGroup) -> Instance:
    port = free_port()
    procs.start(f"ws-{port}", [sys.executable, WS_BACKEND, str(port)])
    wait_for_port(port)
    return Instance(id=f"ws-{port}", service="ws", port=port, health=Health.PASSING)


async def handshake(port: int, extra: bytes = b"") -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """Open a WebSocket through the gateway (sending `extra` right after the head); returns the 101 head."""
    key = base64.b64encode(os.urandom(16))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /ws/chat HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
        b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n%s" % (key, extra)
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
    assert head.startswith(b"HTTP/1.1 101 "), head
    assert b"Sec-WebSocket-Accept: " + accept_key(key) in head
    return reader, writer, head


async def test_websocket_frames_echo_through_the_gateway(gateway: GatewayUnderTest, procs: ProcessGroup) -> None:
    """Small and large (~200 kB) frames sent through the gateway come back unchanged; close is passed both ways."""
    gateway.set([simple_route("ws", "/ws")], [start_ws_backend(procs)])
    reader, writer, head = await handshake(gateway.port)
    assert b"Connection: Upgrade\r\n" in head and b"Upgrade: websocket\r\n" in head
    mask = b"\x01\x02\x03\x04"
    messages = [b"hello", b"x" * 200, os.urandom(200_000), "你好".encode()]
    for message in messages:
        writer.write(frame(2, message, mask))
    for message in messages:
        opcode, data = await asyncio.wait_for(read_frame(reader), 10.0)
        assert (opcode, data) == (2, message)
    writer.write(frame(8, b"\x03\xe8", mask))
    assert await asyncio.wait_for(read_frame(reader), 5.0) == (8, b"\x03\xe8")
    assert await asyncio.wait_for(reader.read(), 5.0) == b""  # the instance closed: so does the gateway
    writer.close()
    await asyncio.sleep(0.05)
    assert not gateway.proxy.tunnels


async def test_frames_sent_with_the_upgrade_request_reach_the_instance(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """Bytes the client sends right behind its upgrade request are delivered once the protocols are switched."""
    gateway.set([simple_route("ws", "/ws")], [start_ws_backend(procs)])
    early = frame(1, b"early bird", b"abcd")
    reader, writer, _ = await handshake(gateway.port, early)
    assert await asyncio.wait_for(read_frame(reader), 5.0) == (1, b"early bird")
    writer.close()


async def test_client_closing_the_tunnel_closes_the_instance_side(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """When the client drops its connection the tunnel ends and the proxy forgets it."""
    gateway.set([simple_route("ws", "/ws")], [start_ws_backend(procs)])
    _reader, writer, _ = await handshake(gateway.port)
    assert len(gateway.proxy.tunnels) == 1
    writer.close()
    for _ in range(100):
        if not gateway.proxy.tunnels:
            break
        await asyncio.sleep(0.02)
    assert not gateway.proxy.tunnels


async def test_upgrade_refused_by_the_instance_is_relayed_and_closes(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """An instance that does not switch answers normally; the client gets that answer, then the connection ends."""
    backend = start_backend(procs, "plain")
    gateway.set([simple_route("ws", "/ws")], [backend.instance(service="ws")])
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET /ws/whoami HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    assert response.startswith(b"HTTP/1.1 200 ") and b"Connection: close\r\n" in response
    assert b'"upgrade": "websocket"' in response  # the instance saw the Upgrade header
    assert not gateway.proxy.tunnels


async def test_upgrade_header_without_connection_upgrade_is_not_forwarded(
    gateway: GatewayUnderTest, procs: ProcessGroup
) -> None:
    """`Upgrade` is hop-by-hop: without `Connection: upgrade` it is dropped and the request is a normal one."""
    backend = start_backend(procs, "plain")
    gateway.set([simple_route("ws", "/ws")], [backend.instance(service="ws")])
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    writer.write(b"GET /ws/whoami HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n")
    response = await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    assert response.startswith(b"HTTP/1.1 200 ") and b'"upgrade"' not in response


class RecordingTransport:
    """Just enough of a transport to see what a tunnel end asks of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def pause_reading(self) -> None:
        self.calls.append("pause_reading")

    def resume_reading(self) -> None:
        self.calls.append("resume_reading")

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.calls.append("write_eof")

    def close(self) -> None:
        self.calls.append("close")

    def abort(self) -> None:
        self.calls.append("abort")


def test_tunnel_flow_control_and_half_close() -> None:
    """A full write buffer on one side pauses reading on the other; EOF is passed on; both EOFs close the tunnel."""
    proxy = SimpleNamespace(tunnels=set())
    down, up = RecordingTransport(), RecordingTransport()
    tunnel = Tunnel(proxy, down, up)  # type: ignore[arg-type]
    proxy.tunnels.add(tunnel)
    tunnel.client.data_received(b"to instance")
    tunnel.upstream.data_received(b"to client")
    assert (bytes(up.data), bytes(down.data)) == (b"to instance", b"to client")
    tunnel.client.pause_writing()  # the client is slow: stop reading the instance
    tunnel.client.resume_writing()
    assert up.calls == ["pause_reading", "resume_reading"]
    assert tunnel.client.eof_received() is True  # the client finished sending: half-close toward the instance
    assert up.calls[-1] == "write_eof" and not tunnel.closed
    assert tunnel.upstream.eof_received() is False  # now both directions ended
    assert tunnel.closed and not proxy.tunnels and down.calls[-1] == "close"
