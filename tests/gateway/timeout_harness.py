"""An in-process instance whose answers take the time a test asks for, and a client that reads slowly.

The instance (`Streamer`) answers by path, on keep-alive connections:

    .../stream/<size>/<chunk>/<pause_ms>   200 with a Content-Length body of `size` bytes, written `chunk` bytes
                                           at a time with `pause_ms` between writes (each waits for the socket)
    .../wait/<ms>                          200 "ok" after `ms`
    anything else                          200 "ok" at once

(what comes before `stream` or `wait` in the path is ignored, except that a path with a `late` segment is
answered only after the instance's `late` seconds). Every answer names the instance in `X-Instance`. It notes
each connection the gateway drops before its answer is complete (`cut`, set in `dropped`), the request heads it
got (`heads`) and the body bytes it wrote (`sent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from jishi.registry.model import Health, Instance


@dataclass
class Streamer:
    """See the module doc."""

    name: str = "streamer"
    late: float = 0.0
    port: int = 0
    sent: int = 0
    heads: list[bytes] = field(default_factory=list)
    cut: int = 0
    dropped: asyncio.Event = field(default_factory=asyncio.Event)
    server: asyncio.Server | None = None

    def instance(self, service: str = "svc") -> Instance:
        return Instance(id=self.name, service=service, port=self.port, health=Health.PASSING)

    async def start(self) -> Streamer:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.server.wait_closed(), 2.0)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.heads.append(head)
                path = head.split(b" ", 2)[1].decode()
                await self.answer(path, writer)
        except (ConnectionError, RuntimeError):  # (uvloop: RuntimeError for a write after the peer's reset)
            self.cut += 1
            self.dropped.set()
        except asyncio.CancelledError:
            return  # the test is over and its loop stops: nothing more to answer
        finally:
            writer.close()

    async def answer(self, path: str, writer: asyncio.StreamWriter) -> None:
        parts = path.strip("/").split("/")
        if "late" in parts:
            await asyncio.sleep(self.late)
        while parts and parts[0] not in ("stream", "wait"):
            parts.pop(0)
        named = b"HTTP/1.1 200 OK\r\nX-Instance: " + self.name.encode()
        if parts and parts[0] == "stream":
            size, chunk, pause = int(parts[1]), int(parts[2]), int(parts[3]) / 1000
            writer.write(named + b"\r\nContent-Length: %d\r\n\r\n" % size)
            sent = 0
            while sent < size:
                n = min(chunk, size - sent)
                writer.write(b"x" * n)
                await writer.drain()
                sent += n
                self.sent += n
                if pause and sent < size:
                    await asyncio.sleep(pause)
            return
        if parts and parts[0] == "wait":
            await asyncio.sleep(int(parts[1]) / 1000)
        writer.write(named + b"\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()


@contextlib.asynccontextmanager
async def streamer(name: str = "streamer", late: float = 0.0) -> AsyncIterator[Streamer]:
    s = await Streamer(name, late).start()
    try:
        yield s
    finally:
        await s.stop()


async def small_window_client(port: int, rcvbuf: int = 4096) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to 127.0.0.1:`port` with a small receive buffer, so that a client that stops reading holds
    little in its kernel and the gateway's writes back up quickly."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock, limit=rcvbuf)


async def wait_for(condition: Callable[[], object], within: float) -> float:
    """Poll `condition()` every 20 ms until true; how long that took (AssertionError after `within` seconds)."""
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    while not condition():
        assert loop.time() - t0 < within, "condition not met in time"
        await asyncio.sleep(0.02)
    return loop.time() - t0
