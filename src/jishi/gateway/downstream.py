"""The client side of the proxy: one protocol per client connection.

Per request: httptools parses the head (`on_url`, `on_header`, `on_headers_complete`; these callbacks and
`data_received` are in `jishi.gateway.downstream_parse`), `jishi.gateway.dispatch` routes it and sends it to a
peer, the body streams on (`on_body`), and the instance connection
(`jishi.gateway.upstream`) hands the response back through `jishi.gateway.relay` into `out`, which is written
to the client in one call at the end of the loop turn, with every other connection's writes (`flush`,
`jishi.gateway.writes`); `finish` ends the exchange. Requests on one connection are answered in order: a
pipelined request waits (with reading paused) until the one before it is answered. Failover is decided by
`jishi.core.retry.decide` and carried out by `jishi.gateway.failover`.

A request the gateway refuses (`jishi.gateway.limits`: ambiguous framing, too large a head or body; a head not
complete within the header timeout; a body stalled for the body timeout) is answered with a JSON error, after
which the connection closes, lingering (`jishi.gateway.closing`, which also applies the timeouts).

Flow control: when the client's write buffer is full the instance connection stops reading, and no pipelined
request starts (they queue, with reading paused, until `resume_writing`), so requests the gateway answers itself
cannot grow that buffer either; when the instance connection's write buffer is full (or a body waits for a
connection) the client stops reading, until that ends or the request does (`finish`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, cast

from httptools import HttpRequestParser

from jishi.gateway import closing, dispatch
from jishi.gateway import downstream_parse as _parse
from jishi.gateway.exchange import REPLAY_LIMIT, Exchange
from jishi.gateway.responses import error_response
from jishi.gateway.upstream import WRITE_HIGH

if TYPE_CHECKING:
    from jishi.gateway.proxy import Proxy

__all__ = ["ClientConnection"]

log = logging.getLogger(__name__)

PENDING_HIGH = 256 * 1024  # body bytes waiting for a connection before the client is paused
_P_UPSTREAM, _P_PENDING, _P_PIPELINE = 1, 2, _parse.P_PIPELINE  # reasons reading is paused (and closing.P_CLOSING)
_P_REQUEST = _P_UPSTREAM | _P_PENDING  # the reasons a request holds: they end with it


class ClientConnection(asyncio.Protocol):
    """One client connection; see the module doc."""

    # Slotted: its ~30 fields are read all along the hot path, and past 30 an instance dict stops sharing its
    # key table with the other connections' (slower reads and writes of every field).
    __slots__ = (
        "_starting",
        "active",
        "big_body",
        "big_read",
        "body_ex",
        "body_read",
        "body_since",
        "broken",
        "client_ip",
        "closed",
        "forwarded",
        "head_since",
        "headers_to",
        "idle_since",
        "lingering",
        "loop",
        "max_body",
        "max_head",
        "out",
        "parser",
        "parsing",
        "paused",
        "pool",
        "proto",
        "proxy",
        "queue",
        "queued",
        "queued_size",
        "send_since",
        "send_size",
        "transport",
        "upgrade_rest",
        "write_paused",
        "write_resumed",
        "writes",
    )

    def __init__(self, proxy: Proxy, https: bool = False) -> None:
        self.proxy = proxy
        self.proto = b"https" if https else b"http"  # X-Forwarded-Proto
        self.loop = proxy.loop
        self.pool = proxy.pool
        self.writes = proxy.writes
        self.queued = False  # in `writes`: `out` is written at the end of this loop turn
        self.queued_size = 0  # bytes read from the instance this loop turn for what `out` holds (`flush_read`)
        self.transport: asyncio.Transport | None = None
        self.parser: HttpRequestParser | None = HttpRequestParser(self)
        self.client_ip = b"-"
        self.forwarded = b""  # "X-Forwarded-For: <ip>\r\nX-Real-IP: <ip>\r\nX-Forwarded-Proto: http(s)\r\n"
        self.parsing: Exchange | None = None
        self.headers_to: Exchange | None = None  # where header callbacks go: the head's exchange, then trailers
        self.active: Exchange | None = None
        self.queue: deque[Exchange] = deque()
        self.paused = 0
        self.write_paused = False
        # The send timeout's watch (`jishi.gateway.client_timeouts`): a resume since the housekeeping's last look,
        # the write buffer's size at that look, and since when it saw no progress (0: nothing waiting).
        self.write_resumed = False
        self.send_size = 0
        self.send_since = 0.0
        self.closed = False
        # The request stream is unusable: answer with this refusal (status, code, message) if set, and close.
        self.broken: tuple[int, str, str] | None = None
        self.max_head = proxy.max_head_size
        self.max_body = proxy.max_body_size
        self.big_body = min(REPLAY_LIMIT, self.max_body)  # a longer body needs a second look
        self.big_read = False  # a read larger than max_head is being parsed: every head in it is measured
        self.upgrade_rest = b""  # bytes after an upgrade request's head, for the instance once switched
        self.lingering = 0.0  # loop time a refusal was sent, while the connection is read and dropped until EOF
        # Loop time an incomplete request head began (the connection's start for the first); while set, the head
        # is measured when complete (`limits.check_head`).
        self.head_since = 0.0
        self.idle_since = self.loop.time()
        # A request body's progress, for the body timeout (`limits.body_stalled`): set at each body read, taken
        # down by the housekeeping, which notes when it saw it (`body_since`) and for which exchange.
        self.body_read = False
        self.body_ex: Exchange | None = None
        self.body_since = 0.0
        self.out: list[bytes] = []  # response bytes not yet written: written at the end of the loop turn (`flush`)
        self._starting = False  # `finish` is starting queued requests (a loop, not a recursion)

    def flush(self) -> None:
        """Have everything produced so far written in one call at the end of this loop turn, with the other
        connections' writes (`jishi.gateway.writes`)."""
        if self.out and not self.queued:
            self.writes.add(self)

    def flush_read(self, size: int) -> None:
        """`flush` after a read of `size` bytes from the instance: at once past `jishi.gateway.writes.BATCH_MAX`
        bytes this turn, so that the client's flow control (`pause_writing`, which stops reading the instance)
        acts before the next read of the instance."""
        if self.out:
            self.writes.queue(self, size)

    def write_now(self) -> None:
        """Write everything produced so far in one call, now (before a close; and for `writes`)."""
        self.queued = False
        out = self.out
        if out and self.transport is not None and not self.closed:
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
        self.forwarded = (
            b"X-Forwarded-For: " + ip + b"\r\nX-Real-IP: " + ip + b"\r\nX-Forwarded-Proto: " + self.proto + b"\r\n"
        )
        self.proxy.clients.add(self)
        self.head_since = self.idle_since

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

    def pause_writing(self) -> None:
        self.write_paused = True
        ex = self.active
        if ex is not None and ex.conn is not None and ex.conn.transport is not None:
            ex.conn.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self.write_resumed = True  # the client took bytes (`jishi.gateway.client_timeouts`)
        ex = self.active
        if ex is not None and ex.conn is not None and ex.conn.transport is not None:
            ex.conn.transport.resume_reading()
            ex.conn.last_read = self.loop.time()  # the pause was the client's: the read timeout starts afresh
        elif ex is None and self.queue and not self._starting:
            self._start_queued()  # requests held back while the client did not read
            self.flush()

    # --- reading: httptools' request callbacks (`jishi.gateway.downstream_parse`; its functions are these methods)

    data_received = _parse.data_received
    on_url = _parse.on_url
    on_header = _parse.on_header
    on_headers_complete = _parse.on_headers_complete
    on_body = _parse.on_body
    on_message_complete = _parse.on_message_complete

    # --- a body waiting for a connection

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
        """Answer `ex` with a JSON error and finish it (or with the route's fallback, when it has one for it)."""
        policy = ex.policy
        if policy is not None and policy.on_error(self, ex, status, code, message):
            return
        close = (
            not ex.keep_alive
            or ex.upgrade is not None  # nothing after an upgrade request's head is read: the connection ends
            or (ex.expect_continue and not ex.req_done)
            or ((self.broken is not None or self.parser is None) and not self.queue)  # (queued: answered first)
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
        proxy = self.proxy
        policy = ex.policy
        if policy is not None:
            policy.done(self, ex, now)
        stats = proxy.stats
        if stats is not None:
            stats.record(ex, now)
        access_log = proxy.access_log
        if access_log is not None:
            access_log.record(self.client_ip, ex, now)
        if self.active is ex:
            self.active = None
        if self.paused:
            self.resume(_P_REQUEST)
        if self.closed or self.transport is None:
            return
        if ex.resp_close:
            self._close()
            return
        if self.queue:
            if not self._starting:
                self._start_queued()
            return  # (when starting: the loop of the outer `finish` goes on with the next one)
        if self.broken is not None or self.parser is None:
            self._close()
            return
        self.idle_since = now

    def _start_queued(self) -> None:
        """Start the pipelined requests while none is active and the client's write buffer has room (else
        `resume_writing` goes on): requests answered at once (a 404, a 429) do not nest one `finish` →
        `dispatch.start` → `finish` per request."""
        self._starting = True
        try:
            queue = self.queue
            while queue and self.active is None and not self.closed and not self.write_paused:
                nxt = queue.popleft()
                if not queue:
                    self.resume(_P_PIPELINE)
                try:
                    dispatch.start(self, nxt)
                except Exception:
                    self.failed(nxt, "starting the request")
        finally:
            self._starting = False

    def failed(self, ex: Exchange, doing: str) -> None:
        """A bug of the gateway's own interrupted `ex` while `doing`: log it, answer 500 (or close if the response
        has begun); the request is never left unanswered."""
        log.exception("gateway: internal error %s %s %r", doing, ex.method.decode("latin-1"), ex.url[:200])
        if ex.finished or self.closed:
            return
        if ex.resp_started:
            self._close()
            return
        try:
            self.error(ex, 500, "internal_error", "the gateway failed while handling the request; see its log")
        except Exception:
            log.exception("gateway: could not answer the failed request; closing the connection")
            self._close()

    # --- refusals, closing and timeouts (`jishi.gateway.closing`)

    def _refuse(self, status: int, code: str, message: str) -> None:
        """The request being parsed is refused; after it nothing more can be read from this connection."""
        closing.refuse(self, status, code, message)

    def _close(self) -> None:
        closing.close(self)

    def close_if_slow(self, now: float) -> bool:
        """408 and close when a request head is overdue; end a lingering close (`closing.close_if_slow`)."""
        return closing.close_if_slow(self, now)

    def close_if_idle(self, cutoff: float) -> bool:
        """Close if no request is in progress and it was idle since before `cutoff`."""
        return closing.close_if_idle(self, cutoff)

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
