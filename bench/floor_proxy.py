"""The floor for a Python proxy: the least an HTTP/1.1 keep-alive reverse proxy on uvloop + httptools does.

    python bench/floor_proxy.py LISTEN_PORT BACKEND_PORT[,BACKEND_PORT...]

`bench/gateway.py --floor` runs it next to nginx, HAProxy and jishi, so that one run shows how far any Python
data plane on this machine can go and how much of jishi's cost is its own. It is *not* a usable proxy: it
round-robins over the backends, adds the X-Forwarded-For / X-Real-IP / X-Forwarded-Proto headers the other
proxies add, keeps idle connections to the backends, and relays each response's bytes as they come, ending
it when httptools says the message is complete. No routing, limits, timeouts, header hygiene, retries, error
answers or request bodies: everything jishi's gateway does beyond moving bytes is missing on purpose.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections import deque

import httptools
import uvloop


class Upstream(asyncio.Protocol):
    """One keep-alive connection to a backend; relays one response at a time to its client."""

    def __init__(self, proxy: FloorProxy, addr: tuple[str, int]) -> None:
        self.proxy = proxy
        self.addr = addr
        self.parser = httptools.HttpResponseParser(self)
        self.client: Client | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is not None and client.transport is not None:
            client.transport.write(data)
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        client, self.client = self.client, None
        self.proxy.idle[self.addr].append(self)
        if client is not None:
            client.next()

    def connection_lost(self, exc: Exception | None) -> None:
        idle = self.proxy.idle[self.addr]
        if self in idle:
            idle.remove(self)
        if self.client is not None and self.client.transport is not None:
            self.client.transport.close()


class Client(asyncio.Protocol):
    """One client connection: requests are parsed and sent on, one at a time, in order."""

    def __init__(self, proxy: FloorProxy) -> None:
        self.proxy = proxy
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[bytes] = deque()
        self.busy = False
        self.url = b""
        self.lines: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        ip = transport.get_extra_info("peername")[0].encode()
        self.forwarded = b"X-Forwarded-For: %s\r\nX-Real-IP: %s\r\nX-Forwarded-Proto: http\r\n" % (ip, ip)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_url(self, url: bytes) -> None:
        self.url = url
        self.lines = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.lines += (name, b": ", value, b"\r\n")

    def on_message_complete(self) -> None:
        method = self.parser.get_method()
        self.waiting.append(b"".join((method, b" ", self.url, b" HTTP/1.1\r\n", *self.lines, self.forwarded, b"\r\n")))
        if not self.busy:
            self.next()

    def next(self) -> None:
        self.busy = bool(self.waiting)
        if self.busy:
            self.proxy.send(self, self.waiting.popleft())

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class FloorProxy:
    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.loop = asyncio.get_running_loop()
        self.turn = itertools.cycle(backends)
        self.idle: dict[tuple[str, int], list[Upstream]] = {addr: [] for addr in backends}

    def send(self, client: Client, head: bytes) -> None:
        addr = next(self.turn)
        idle = self.idle[addr]
        if idle:
            conn = idle.pop()
            conn.client = client
            assert conn.transport is not None
            conn.transport.write(head)
        else:
            self.loop.create_task(self._connect(addr, client, head))

    async def _connect(self, addr: tuple[str, int], client: Client, head: bytes) -> None:
        transport, conn = await self.loop.create_connection(lambda: Upstream(self, addr), *addr)
        conn.client = client
        transport.write(head)


async def main(port: int, backends: list[tuple[str, int]]) -> None:
    proxy = FloorProxy(backends)
    server = await proxy.loop.create_server(lambda: Client(proxy), "127.0.0.1", port, backlog=2048)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), [("127.0.0.1", int(p)) for p in sys.argv[2].split(",")]))
