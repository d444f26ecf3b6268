"""The client side of the proxy: one protocol per client connection, driving exchanges to instances.

Per request: parse the head (httptools), match a route, pick a peer (smooth weighted round-robin), take a
pooled connection or open one, send the head and stream the body, stream the response back. Requests on one
connection are answered in order: a pipelined request waits (with reading paused) until the one before it is
answered.

Failover is decided by `jishi.core.retry.decide` and carried out by `jishi.gateway.failover`.

Flow control: when the client's write buffer is full the instance connection stops reading, and when the
instance connection's write buffer is full (or a body waits for a connection) the client stops reading.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from jishi.core.retry import Failure
from jishi.gateway.exchange import IDEMPOTENT, REPLAY_LIMIT, Exchange, RequestHeader
from jishi.gateway.failover import after_failure, give_up
from jishi.gateway.responses import error_response, status_line
from jishi.gateway.upstream import WRITE_HIGH, UpstreamConnection

if TYPE_CHECKING:
    from jishi.core.balancer import Peer
    from jishi.gateway.proxy import Proxy

__all__ = ["ClientConnection"]

log = logging.getLogger(__name__)

PENDING_HIGH = 256 * 1024  # body bytes waiting for a connection before the client is paused
_P_UPSTREAM, _P_PENDING, _P_PIPELINE, _P_CLOSING = 1, 2, 4, 8
_H = RequestHeader
_CHUNK_END = b"0\r\n\r\n"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_TE_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_CONN_CLOSE = b"Connection: close\r\n"
_CONN_KEEP = b"Connection: keep-alive\r\n"


class ClientConnection(asyncio.Protocol):
    """One client connection; see the module doc."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.loop = proxy.loop
        self.pool = proxy.pool
        self.transport: asyncio.Transport | None = None
        self.parser: HttpRequestParser | None = HttpRequestParser(self)
        self.client_ip = b"-"
        self._fwd = b""
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
        self._fwd = b"X-Real-IP: " + self.client_ip + b"\r\nX-Forwarded-Proto: http\r\n"
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
            self._pause(_P_CLOSING)
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
        ex = self.parsing
        assert ex is not None
        act = _H.BY_NAME.get(name.lower())
        if act is None:
            ex.lines.append(b"%s: %s\r\n" % (name, value))
        elif act == _H.HOST:
            ex.host = value
            ex.lines.append(b"%s: %s\r\n" % (name, value))
        elif act == _H.CONTENT_LENGTH:
            ex.content_length = int(value) if value.isdigit() else -1
            ex.lines.append(b"%s: %s\r\n" % (name, value))
        elif act == _H.FORWARDED_FOR:
            ex.xff = value if ex.xff is None else ex.xff + b", " + value
        elif act == _H.TRANSFER_ENCODING:
            ex.chunked_req = ex.chunked_req or b"chunked" in value.lower()
        elif act == _H.CONNECTION:
            tokens = [t.strip().lower() for t in value.split(b",")]
            extra = [t for t in tokens if t and t not in (b"close", b"keep-alive", b"upgrade")]
            if extra:
                ex.conn_tokens = (ex.conn_tokens or []) + extra
        elif act == _H.EXPECT:
            ex.expect_continue = value.lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        ex = self.parsing
        parser = self.parser
        assert ex is not None and parser is not None
        ex.method = parser.get_method()
        ex.keep_alive = parser.should_keep_alive()  # an upgrade request also ends the connection (data_received)
        ex.http11 = parser.get_http_version() == "1.1"
        ex.idempotent = ex.method in IDEMPOTENT
        if ex.content_length > REPLAY_LIMIT:
            ex.replayable = False
        if ex.conn_tokens:
            ex.drop_connection_tokens()
        if self.active is None:
            self._start(ex)
        else:
            self.queue.append(ex)
            self._pause(_P_PIPELINE)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        assert ex is not None
        if ex.finished:
            return  # answered already (an error, or an early response): the rest of the body is discarded
        if ex.chunked_req:
            self._body(ex, b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self._body(ex, body)

    def on_message_complete(self) -> None:
        ex = self.parsing
        assert ex is not None
        self.parsing = None
        ex.req_done = True
        if ex.chunked_req and not ex.finished:
            self._body(ex, _CHUNK_END)

    def _body(self, ex: Exchange, *pieces: bytes) -> None:
        size = 0
        for piece in pieces:
            size += len(piece)
        ex.body_size += size
        conn = ex.conn
        if conn is not None:
            if len(pieces) == 1:
                conn.write(pieces[0])
            else:
                assert conn.transport is not None
                conn.transport.writelines(pieces)
            if ex.replayable:
                if ex.body_size > REPLAY_LIMIT:
                    ex.replayable = False
                    ex.body.clear()
                else:
                    ex.body.extend(pieces)
            return
        ex.body.extend(pieces)
        if ex.body_size > REPLAY_LIMIT:
            ex.replayable = False
        if ex.body_size > PENDING_HIGH:
            self._pause(_P_PENDING)

    # --- one exchange

    def _start(self, ex: Exchange) -> None:
        self.active = ex
        if self.proxy.stopping:
            ex.keep_alive = False
        if ex.method == b"CONNECT":
            self.error(ex, 405, "method_not_allowed", "the gateway does not tunnel CONNECT requests")
            return
        url = ex.url
        if url[:1] != b"/":
            origin = self._origin_form(ex)
            if origin is None:
                self.error(ex, 400, "bad_request", f"request target {ex.url[:200]!r} is not a path")
                return
            url = origin
        match = self.proxy.table.match(ex.host, url)
        if match is None:
            host = (ex.host or b"").decode("latin-1")
            self.error(ex, 404, "no_route", f"no route for host {host!r} and path {url[:200].decode('latin-1')!r}")
            return
        route = ex.route = match.route
        ex.path = match.path
        if not route.balancer.peers:
            self.error(ex, 503, "no_healthy_instance", f"route {route.name!r} has no healthy instance")
            return
        if ex.expect_continue and not ex.req_done:
            self.out.append(_CONTINUE)
            self.flush()
        xff = ex.xff + b", " + self.client_ip if ex.xff else self.client_ip
        parts = [ex.method, b" ", ex.path, b" HTTP/1.1\r\n", *ex.lines, b"X-Forwarded-For: ", xff, b"\r\n", self._fwd]
        if ex.host is not None:
            parts += (b"X-Forwarded-Host: ", ex.host, b"\r\n")
        if ex.chunked_req:
            parts.append(_TE_CHUNKED)
        ex.head_base = b"".join(parts)
        self.try_peer(ex, None)

    def _origin_form(self, ex: Exchange) -> bytes | None:
        """Absolute-form targets (`GET http://host/path`): take the host from the URL, return the path."""
        url = ex.url
        lower = url[:8].lower()
        if not (lower.startswith(b"http://") or lower.startswith(b"https://")):
            return None
        rest = url[url.index(b"//") + 2 :]
        slash = rest.find(b"/")
        host, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
        if ex.host is None:
            ex.host = host
            ex.lines.append(b"Host: " + host + b"\r\n")
        ex.url = path
        return path

    def try_peer(self, ex: Exchange, same_peer: Peer | None) -> None:
        route = ex.route
        assert route is not None
        if same_peer is not None:
            peer: Peer | None = same_peer
        else:
            peer = route.balancer.pick(self.loop.time(), ex.tried)
            if peer is None:
                give_up(self, ex)
                return
            ex.tries += 1
        assert peer is not None
        ex.peer = peer
        fresh = same_peer is not None or not ex.replayable
        conn = None if fresh else self.pool.acquire(peer.addr)
        if conn is not None:
            self._send(ex, conn)
        else:
            self.proxy.connect(peer.addr, route.connect_timeout, self, ex, peer)

    def connected(self, ex: Exchange, peer: Peer, conn: UpstreamConnection | None, error: BaseException | None) -> None:
        """The proxy's connect for `ex` finished (with a connection or an error)."""
        if ex.finished or self.closed or ex is not self.active or ex.peer is not peer:
            if conn is not None:
                self.pool.release(conn)
            return
        if conn is None:
            timed_out = isinstance(error, TimeoutError)
            what = "timed out" if timed_out else f"failed: {error}"
            message = f"connect to {peer.address}:{peer.port} {what}"
            after_failure(self, ex, peer, Failure.CONNECT, message, reused=False, got_bytes=False, timed_out=timed_out)
        else:
            self._send(ex, conn)
        self.flush()

    def _send(self, ex: Exchange, conn: UpstreamConnection) -> None:
        route = ex.route
        assert route is not None and ex.peer is not None
        ex.conn = conn
        head = ex.head_base
        if ex.host is None:
            head += b"Host: %s:%d\r\n" % (ex.peer.address.encode(), ex.peer.port)
        payload = b"".join((head, b"\r\n", *ex.body)) if ex.body else head + b"\r\n"
        conn.send(self, payload, head_request=ex.method == b"HEAD", read_timeout=route.read_timeout)
        if not ex.replayable:
            ex.body.clear()
        if self.paused & _P_PENDING:
            self._resume(_P_PENDING)
        if self.write_paused and conn.transport is not None:
            conn.transport.pause_reading()

    # --- called by UpstreamConnection

    def response_head(self, conn: UpstreamConnection, status: int, bodyless: bool, has_length: bool) -> None:
        ex = self.active
        assert ex is not None and self.transport is not None
        ex.status = status
        close = not ex.keep_alive or self.broken is not None or self.parser is None or self.proxy.stopping
        parts = [status_line(status), *conn.head_lines]
        if not bodyless and not has_length:
            if ex.http11:
                ex.resp_chunked = True
                parts.append(_TE_CHUNKED)
            else:
                close = True  # an HTTP/1.0 client reads the body to the end of the connection
        if close:
            parts.append(_CONN_CLOSE)
        elif not ex.http11:
            parts.append(_CONN_KEEP)
        parts.append(b"\r\n")
        ex.resp_close = close
        ex.resp_started = True
        self.out += parts

    def response_body(self, body: bytes) -> None:
        ex = self.active
        assert ex is not None and self.transport is not None
        ex.bytes_out += len(body)
        if ex.resp_chunked:
            self.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self.out.append(body)

    def response_done(self, conn: UpstreamConnection, *, keep_alive: bool) -> None:
        ex = self.active
        assert ex is not None and self.transport is not None
        if ex.resp_chunked:
            self.out.append(_CHUNK_END)
        ex.conn = None
        if self.write_paused and conn.transport is not None and not conn.closed:
            conn.transport.resume_reading()
        if keep_alive and ex.req_done and not conn.closed:
            self.pool.release(conn)
        else:
            conn.abort()
        self.finish(ex)

    def upstream_failed(self, conn: UpstreamConnection, kind: Failure, message: str) -> None:
        ex = self.active
        if ex is None or ex.conn is not conn:
            return
        ex.conn = None
        peer = ex.peer
        assert peer is not None
        after_failure(self, ex, peer, kind, message, reused=conn.reused, got_bytes=conn.got_bytes, timed_out=False)

    def upstream_pause_writing(self) -> None:
        self._pause(_P_UPSTREAM)

    def upstream_resume_writing(self) -> None:
        self._resume(_P_UPSTREAM)

    # --- endings

    def error(self, ex: Exchange, status: int, code: str, message: str) -> None:
        assert self.transport is not None
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

    def finish(self, ex: Exchange) -> None:
        ex.finished = True
        proxy = self.proxy
        if proxy.access_log is not None:
            proxy.access_log.record(self.client_ip, ex, self.loop.time())
        if self.active is ex:
            self.active = None
        if self.paused & _P_UPSTREAM:
            self._resume(_P_UPSTREAM)
        transport = self.transport
        if self.closed or transport is None:
            return
        if ex.resp_close:
            self._close()
            return
        if self.queue:
            nxt = self.queue.popleft()
            if not self.queue:
                self._resume(_P_PIPELINE)
            self._start(nxt)
            return
        if self.broken is not None or self.parser is None:
            self._close()
            return
        self.idle_since = self.loop.time()

    def _bad_request(self, message: str) -> None:
        self.parser = None
        self._pause(_P_CLOSING)
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
        assert self.transport is not None
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

    def _pause(self, reason: int) -> None:
        if not self.paused and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused and self.transport is not None and not self.closed:
                self.transport.resume_reading()
