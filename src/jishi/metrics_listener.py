"""A small HTTP listener on the event loop for `GET /metrics` (Prometheus text format) and `GET /healthz`.

The gateway's admin port and the agent's metrics port use it. It is written here rather than taken from
prometheus_client (`start_http_server`), because that one serves from a thread of its own with wsgiref: the
processes here are single-threaded asyncio programs, and a scrape should be one more callback on their loop,
not a second thread touching their state. Each request is answered once and the connection closed (HTTP/1.1,
`Connection: close`); anything else gets a JSON error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

__all__ = ["CONTENT_TYPE", "MetricsListener"]

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the Prometheus text exposition format
_HEAD_LIMIT = 8192


class MetricsListener:
    """Serves `render()` at /metrics and {"status": "ok"} at /healthz; `what` names it in logs and errors."""

    def __init__(self, render: Callable[[], bytes], what: str, *, timeout: float = 5.0) -> None:
        self.render = render
        self.what = what
        self.timeout = timeout
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); returns the bound port."""
        self._server = await asyncio.start_server(self._handle, host, port)
        bound = int(self._server.sockets[0].getsockname()[1])
        log.info("%s on http://%s:%d/metrics", self.what, host, bound)
        return bound

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                head = await reader.readuntil(b"\r\n\r\n")
                status, ctype, body = self._answer(head[:_HEAD_LIMIT])
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            log.debug("%s: connection dropped: %s", self.what, exc)
        except Exception:
            log.exception("%s failed to answer", self.what)
        finally:
            writer.close()

    def _answer(self, head: bytes) -> tuple[str, str, bytes]:
        parts = head.split(b"\r\n", 1)[0].split()
        method, target = (parts[0], parts[1]) if len(parts) >= 2 else (b"", b"")
        path = target.split(b"?", 1)[0]
        if method != b"GET":
            return _error("405 Method Not Allowed", "method_not_allowed", f"the {self.what} answers GET only")
        if path == b"/metrics":
            return "200 OK", CONTENT_TYPE, self.render()
        if path == b"/healthz":
            return "200 OK", "application/json", b'{"status": "ok"}'
        return _error(
            "404 Not Found", "not_found", f"no {path.decode(errors='replace')} here: try /metrics or /healthz"
        )


def _error(status: str, code: str, message: str) -> tuple[str, str, bytes]:
    return status, "application/json", json.dumps({"error": {"code": code, "message": message}}).encode()
