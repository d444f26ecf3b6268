"""Reading a client is held back while what the gateway produces for it cannot be written (its write buffer is
full), and every hold a request puts on reading ends with that request: real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest
from gateway_harness import GatewayUnderTest, simple_route

from jishi.gateway.proxy import Proxy
from jishi.registry.model import Health, Instance


async def test_pipelined_requests_the_gateway_answers_itself_stop_reading_a_client_that_does_not_read(
    gateway: GatewayUnderTest,
) -> None:
    """Pipelined requests the gateway answers itself (404) from a client that never reads stop being read once
    its write buffer is full, instead of the buffer growing without bound."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", gateway.port))
    request = b"GET /nothing-here HTTP/1.1\r\nHost: a\r\n\r\n" * 1000  # 40 kB, 1000 requests
    worst = 0
    try:
        deadline = loop.time() + 3.0
        while loop.time() < deadline:
            try:
                await asyncio.wait_for(loop.sock_sendall(sock, request), 0.5)
            except TimeoutError:
                stopped = True  # the gateway stopped reading us
            else:
                stopped = False
            for client in gateway.proxy.clients:
                if client.transport is not None:
                    worst = max(worst, client.transport.get_write_buffer_size())
            if stopped:
                break
    finally:
        sock.close()
    assert worst < 4 * 1024 * 1024, f"{worst} bytes of responses buffered for a client that reads nothing"


async def test_pipelined_requests_held_while_the_client_does_not_read_are_answered_once_it_reads(
    gateway: GatewayUnderTest,
) -> None:
    """Requests held back while the client's write buffer was full are all answered, in order, once it reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    count = 50000
    try:
        for _ in range(9):  # in several reads: the gateway fills the client's buffers and stops reading
            writer.write(b"GET /nothing-here HTTP/1.1\r\nHost: a\r\n\r\n" * (count // 10))
            await asyncio.sleep(0.05)
        writer.write(b"GET /nothing-here HTTP/1.1\r\nHost: a\r\n\r\n" * (count // 10 - 1))
        writer.write(b"GET /nothing-here HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(-1), 10.0)
    finally:
        writer.close()
    assert data.count(b"HTTP/1.1 404 ") == count


async def test_a_client_paused_for_a_body_waiting_on_a_failed_connect_is_not_left_hanging() -> None:
    """A body over 256 KiB waiting for a connect that then fails (504) does not leave the client paused: the rest
    of the body is read and dropped and the next request answered (or the connection closes)."""
    blackhole = socket.socket()  # a listener whose accept queue is full: a connect to it times out
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(blackhole.getsockname())
        fillers.append(s)
    proxy = Proxy(body_timeout=1.0, keepalive_timeout=1.0)
    port = await proxy.start("127.0.0.1", 0)
    gw = GatewayUnderTest(proxy, port)
    gw.set(
        [simple_route(connect_timeout=0.5, retries=0)],
        [Instance(id="b", service="svc", port=blackhole.getsockname()[1], health=Health.PASSING)],
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        body = b"x" * (1024 * 1024)
        writer.write(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        writer.write(b"GET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        assert head.startswith(b"HTTP/1.1 504 "), head
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        try:
            rest = await asyncio.wait_for(reader.read(-1), 4.0)  # the next answer, or the gateway closing
        except TimeoutError:
            paused = [c.paused for c in proxy.clients]
            pytest.fail(f"connection neither answered nor closed 4 s after the 504 (reading paused: {paused})")
        assert rest == b"" or rest.startswith(b"HTTP/1.1 "), rest[:100]
    finally:
        writer.close()
        await proxy.stop(grace=0.5)
        for s in fillers:
            s.close()
        blackhole.close()
