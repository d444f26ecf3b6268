"""A small HTTP/1.1 instance for gateway tests: `python backend.py PORT NAME`.

Endpoints (any prefix is accepted before them, so stripped and unstripped paths both work):
    /whoami         JSON {name, port, path, conn, headers}; `conn` numbers the TCP connections it accepted
    /echo           the request body back (Content-Length), with its size and the request headers in headers
    /chunked?n=K    K chunks of "chunk-i\\n" sent as a chunked response, 5 ms apart (`&gap=S`: S seconds)
    /big?size=N     N bytes of "x" with a Content-Length
    /sleep?s=X      answers after X seconds
    /close          answers with Connection: close and closes
    /eof            an HTTP/1.0-style response without length, ended by closing the connection
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import parse_qs, urlsplit

import httptools

NAME = "backend"
PORT = 0
CONNECTIONS = 0


class Handler(asyncio.Protocol):
    def __init__(self) -> None:
        global CONNECTIONS
        CONNECTIONS += 1
        self.conn_no = CONNECTIONS
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # an upgrade request: answered like any other (this instance never switches protocols)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.body = b"", {}, []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode().lower()
        self.headers[key] = (self.headers[key] + ", " if key in self.headers else "") + value.decode()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url = urlsplit(self.url.decode())
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        method = self.parser.get_method().decode()
        asyncio.get_running_loop().create_task(self.respond(method, url.path, query))

    async def respond(self, method: str, path: str, query: dict[str, str]) -> None:
        t = self.transport
        assert t is not None
        if path.endswith("/sleep"):
            await asyncio.sleep(float(query.get("s", "1")))
        if path.endswith("/chunked"):
            t.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n")
            for i in range(int(query.get("n", "3"))):
                data = f"chunk-{i}\n".encode()
                t.write(b"%x\r\n%s\r\n" % (len(data), data))
                await asyncio.sleep(float(query.get("gap", "0.005")))
            t.write(b"0\r\n\r\n")
            return
        if path.endswith("/eof"):
            t.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close")
            t.close()
            return
        extra = b""
        if path.endswith("/big"):
            body = b"x" * int(query.get("size", "1000"))
        elif path.endswith("/echo"):
            body = b"".join(self.body)
            extra = b"X-Echo-Size: %d\r\nX-Echo-Headers: %s\r\n" % (len(body), json.dumps(self.headers).encode())
        else:
            info = {"name": NAME, "port": PORT, "path": self.url.decode(), "conn": self.conn_no, "method": method}
            body = json.dumps({**info, "headers": self.headers}).encode()
        close = path.endswith("/close") or not self.parser.should_keep_alive()
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/json\r\n%s%s\r\n" % (
            len(body),
            extra,
            b"Connection: close\r\n" if close else b"",
        )
        t.write(head if method == "HEAD" else head + body)
        if close:
            t.close()


async def main() -> None:
    server = await asyncio.get_running_loop().create_server(Handler, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    PORT, NAME = int(sys.argv[1]), sys.argv[2]
    asyncio.run(main())
