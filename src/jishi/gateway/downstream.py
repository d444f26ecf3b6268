"""The client side of the proxy: one protocol per client connection.

Per request: httptools parses the head (`on_url`, `on_header`, `on_headers_complete`), `jishi.gateway.dispatch`
routes it and sends it to a peer, the body streams on (`on_body`), and the instance connection
(`jishi.gateway.upstream`) hands the response back through `jishi.gateway.relay` into `out`, which is written
to the client once per event (`flush`); `finish` ends the exchange. Requests on one connection are answered in order: a
pipelined request waits (with reading paused) until the one before it is answered. Failover is decided by
`jishi.core.retry.decide` and carried out by `jishi.gateway.failover`.

Flow control: when the client's write buffer is full the instance connection stops reading, and when the
instance connection's write buffer is full (or a body waits for a connection) the client stops reading.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from jishi.gateway import dispatch
from jishi.gateway.exchange import REPLAY_LIMIT, Exchange
from jishi.gateway.headers import (
    CONNECTION,
    CONTENT_LENGTH,
    EXPECT,
    FORWARD,
    FORWARDED_FOR,
    HOST,
    REQUEST_ACTIONS,
    TRANSFER_ENCODING,
    connection_tokens,
    drop_named,
    request_action,
)
from jishi.gateway.responses import error_response
from jishi.gateway.upstream import WRITE_HIGH

if TYPE_CHECKING:
    from jishi.gateway.proxy import Proxy

__all__ = ["ClientConnection"]

log = logging.getLogger(__name__)

PENDING_HIGH = 256 * 1024  # body bytes waiting for a connection before the client is paused
_P_UPSTREAM, _P_PENDING, _P_PIPELINE, _P_CLOSING = 1, 2, 4, 8
_CRLF = b"\r\n"
_CHUNK_END = b"0\r\n\r\n"
_ACTIONS_GET = REQUEST_ACTIONS.get


class ClientConnection(asyncio.Protocol):
    """One client connection; see the module doc."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.loop = proxy.loop
        self.pool = proxy.pool
        self.transport: asyncio.Transport | None = None
        self.parser: HttpRequestParser | None = HttpRequestParser(self)
        self.client_ip = b"-"
        self.forwarded = b""  # "X-Forwarded-For: <ip>\r\nX-Real-IP: <ip>\r\nX-Forwarded-Proto: http\r\n"
        self.parsing: Exchange | None = None
        self.active: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.paused = 0
        self.write_paused = False
        self.closed = False
        self.broken: str | None = None  # the request stream is unusable: answer 400 (if non-empty) and close
        self.idle_since = self.loop.time()
        self.out: list[bytes] = []  # response bytes not yet written: flushed once per event

    def flush(self) -> None:
        """Write everything produced so far in one call (one syscall per event, not per piece)."""
        out = self.out
        if out and self.transport is not None:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
            out.clear()

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH)
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = str(peer[0]).encode()
        ip = self.client_ip
        self.forwarded = b"X-Forwarded-For: " + ip + b"\r\nX-Real-IP: " + ip + b"\r\nX-Forwarded-Proto: http\r\n"
        self.proxy.clients.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.proxy.clients.discard(self)
        ex = self.active
        if ex is not None and not ex.finished:
            if ex.conn is not None:
                ex.conn.abort()
                ex.conn = None
            if not ex.status or not ex.resp_started:
                ex.status = 499  # the client went away before its response was complete
            self.finish(ex)
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:
            return
        try:
            parser.feed_data(data)
        except HttpParserUpgrade:
            # The request is complete; it is answered without switching protocols, then the connection closes.
            self.parser = None
            self.pause(_P_CLOSING)
        except HttpParserError as exc:
            self._bad_request(f"malformed HTTP request: {exc}")
        if self.out:
            self.flush()

    def pause_writing(self) -> None:
        self.write_paused = True
        ex = self.active
        if ex is not None and ex.conn is not None and ex.conn.transport is not None:
            ex.conn.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        ex = self.active
        if ex is not None and ex.conn is not None and ex.conn.transport is not None:
            ex.conn.transport.resume_reading()

    # --- httptools request callbacks

    # (No on_message_begin: httptools skips callbacks a protocol does not define; the URL starts a request.)

    def on_url(self, url: bytes) -> None:
        ex = self.parsing
        if ex is None:
            self.parsing = Exchange(self.loop.time(), url)
        else:
            ex.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        action = _ACTIONS_GET(name)
        if action is None:
            action = request_action(name)
        ex = self.parsing
        assert ex is not None
        if action == FORWARD:
            ex.lines += (name, b": ", value, _CRLF)
        elif action == HOST:
            ex.host = value
            ex.lines += (name, b": ", value, _CRLF)
        elif action == CONTENT_LENGTH:
            ex.content_length = int(value) if value.isdigit() else -1
            ex.lines += (name, b": ", value, _CRLF)
        elif action == FORWARDED_FOR:
            ex.xff = value if ex.xff is None else ex.xff + b", " + value
        elif action == TRANSFER_ENCODING:
            ex.chunked_req = ex.chunked_req or b"chunked" in value.lower()
        elif action == CONNECTION:
            ex.conn_header = True
            extra = connection_tokens(value)
            if extra:
                ex.conn_tokens = (ex.conn_tokens or []) + extra
        elif action == EXPECT:
            ex.expect_continue = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        ex = self.parsing
        parser = self.parser
        assert ex is not None and parser is not None
        ex.method = parser.get_method()
        keep_alive = ex.keep_alive = parser.should_keep_alive()  # an upgrade request also ends the connection
        if ex.conn_header:
            ex.http11 = parser.get_http_version() == "1.1"
            if ex.conn_tokens:
                ex.lines = drop_named(ex.lines, ex.conn_tokens)
        else:
            ex.http11 = keep_alive  # without a Connection header only HTTP/1.1 is kept alive
        if ex.content_length > REPLAY_LIMIT:
            ex.replayable = False
        if self.active is None:
            dispatch.start(self, ex)
        else:
            self.queue.append(ex)
            self.pause(_P_PIPELINE)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        if ex.finished:
            return  # answered already (an error, or an early response): the rest of the body is discarded
        if ex.chunked_req:
            dispatch.body(self, ex, b"%x\r\n" % len(body), body, _CRLF)
        else:
            dispatch.body(self, ex, body)

    def on_message_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        self.parsing = None
        ex.req_done = True
        if ex.chunked_req and not ex.finished:
            dispatch.body(self, ex, _CHUNK_END)

    def body_waiting(self, size: int) -> None:
        """`size` body bytes wait for a connection: stop reading the client while there are too many."""
        if size > PENDING_HIGH:
            self.pause(_P_PENDING)

    def body_sent(self) -> None:
        """The body kept while waiting for a connection went out: read the client again."""
        self.resume(_P_PENDING)

    # --- flow control asked for by the instance connection

    def upstream_pause_writing(self) -> None:
        self.pause(_P_UPSTREAM)

    def upstream_resume_writing(self) -> None:
        self.resume(_P_UPSTREAM)

    # --- endings

    def error(self, ex: Exchange, status: int, code: str, message: str) -> None:
        """Answer `ex` with a JSON error and finish it."""
        close = (
            not ex.keep_alive
            or (ex.expect_continue and not ex.req_done)
            or self.broken is not None
            or self.parser is None
        )
        ex.status = status
        ex.resp_close = close
        ex.resp_started = True
        self.out.append(error_response(status, code, message, close=close, head_only=ex.method == b"HEAD"))
        self.flush()
        self.finish(ex)

    def finish(self, ex: Exchange, now: float | None = None) -> None:
        """`ex` is over (at loop time `now`): log it, then go on with the next pipelined request, or close, or
        wait."""
        ex.finished = True
        if now is None:
            now = self.loop.time()
        access_log = self.proxy.access_log
        if access_log is not None:
            access_log.record(self.client_ip, ex, now)
        if self.active is ex:
            self.active = None
        if self.paused:
            self.resume(_P_UPSTREAM)
        if self.closed or self.transport is None:
            return
        if ex.resp_close:
            self._close()
            return
        if self.queue:
            nxt = self.queue.popleft()
            if not self.queue:
                self.resume(_P_PIPELINE)
            dispatch.start(self, nxt)
            return
        if self.broken is not None or self.parser is None:
            self._close()
            return
        self.idle_since = now

    def _bad_request(self, message: str) -> None:
        self.parser = None
        self.pause(_P_CLOSING)
        ex = self.parsing
        self.parsing = None
        if ex is not None and ex is self.active:
            # The request being proxied has a broken body: it cannot be completed.
            if ex.conn is not None:
                ex.conn.abort()
                ex.conn = None
            if ex.resp_started:
                ex.resp_close = True
                self.finish(ex)
            else:
                ex.keep_alive = False
                self.error(ex, 400, "bad_request", message)
            return
        if ex is not None and ex in self.queue:
            self.queue.remove(ex)
        if self.active is None and not self.queue:
            self._write_400_and_close(message)
        else:
            self.broken = message  # answered after the requests before it

    def _write_400_and_close(self, message: str) -> None:
        log.info("client %s: %s", self.client_ip.decode(), message)
        self.out.append(error_response(400, "bad_request", message, close=True))
        self._close()

    def _close(self) -> None:
        if self.broken:
            message, self.broken = self.broken, ""
            self._write_400_and_close(message)
            return
        self.flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def close_if_idle(self, cutoff: float) -> bool:
        """Close the connection if no request is in progress and it was idle since before `cutoff`."""
        if self.active is None and self.parsing is None and not self.queue and self.idle_since <= cutoff:
            self._close()
            return True
        return False

    # --- reading pauses (several reasons can hold one)

    def pause(self, reason: int) -> None:
        """Stop reading from the client for `reason` (one of the _P_* bits)."""
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def resume(self, reason: int) -> None:
        """`reason` no longer holds reading back; read again when no other reason does."""
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and self.transport is not None and not self.closed:
                self.transport.resume_reading()
