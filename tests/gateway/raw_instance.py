"""An in-process instance that answers canned bytes, for tests of what the gateway does with odd requests and
responses, and a raw one-shot client."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway_harness import GatewayUnderTest, simple_route

from jishi.registry.model import Health, Instance

__all__ = ["RawInstance", "exchange", "head_of", "raw_gateway"]


class RawInstance:
    """An in-process instance on 127.0.0.1 that reads requests as an HTTP/1.1 server does (a body only by its
    Content-Length), records each head, and answers each with the canned response `answer`."""

    def __init__(self, answer: bytes | Callable[[bytes], bytes]) -> None:
        self.answer = answer
        self.heads: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                for line in head.lower().split(b"\r\n"):
                    if line.startswith(b"content-length:"):
                        await reader.readexactly(int(line.split(b":")[1]))
                writer.write(self.answer if isinstance(self.answer, bytes) else self.answer(head))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def raw_gateway(gateway: GatewayUnderTest, answer: bytes | Callable[[bytes], bytes]) -> RawInstance:
    """`gateway` routing everything to a new `RawInstance` answering `answer`."""
    inst = RawInstance(answer)
    await inst.start()
    gateway.set([simple_route()], [Instance(id="raw", service="svc", port=inst.port, health=Health.PASSING)])
    return inst


async def exchange(port: int, request: bytes) -> bytes:
    """Send `request` on a new connection and read until the gateway closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(-1), 5.0)
    finally:
        writer.close()


def head_of(response: bytes) -> bytes:
    """The head of `response`, without its final CRLF CRLF."""
    return response.partition(b"\r\n\r\n")[0]
