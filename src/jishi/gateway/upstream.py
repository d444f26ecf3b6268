"""Connections to instances (upstream side of the proxy).

An `UpstreamConnection` is an asyncio protocol that parses responses with httptools and hands each event, through
`jishi.gateway.relay`, to the client connection it is currently bound to (its `owner`, a
`jishi.gateway.downstream.ClientConnection`). One request is in flight on a connection at a time. Response
headers to forward are collected as pieces of one list (`jishi.gateway.headers` says which).

A response ends (`relay.done`) only after the whole read it ended in is parsed: bytes after it there (a body
for HEAD, 204 or 304, more than its Content-Length, another response) mean the instance is out of step, and the
connection is closed rather than kept. A connection that may be kept alive goes back to the `Pool`
(`jishi.gateway.pool`), pooled per (address, port) — per (address, port, settings) for one made under a route's
`upstream_tls` settings, so a connection is reused only by a route with equal settings.

Failures reported to the owner (`relay.failed`, kinds from `jishi.core.retry.Failure`): LOST (closed or
reset before the response was complete), TIMEOUT (no response byte for the route's read timeout, not counting
time the gateway held reading back because the client was slow to take the response, or the request's total
timeout passed before the response ended; the pool checks every ~50 ms rather than arming a timer per request),
PROTOCOL (not HTTP; a head still incomplete after `MAX_RESPONSE_HEAD` bytes; a transfer coding other than
chunked). An exception in the gateway's own callbacks is none of these: it is logged and the client gets a 500,
with no verdict on the instance. A 5xx response head on a
route that retries on its status goes to `jishi.gateway.failover.retry_status` before anything is relayed; if
the request goes elsewhere the connection is dropped with the rest of that response. On a `tracked` route the
end of each try (complete, failed, abandoned) is reported to `jishi.gateway.balancing.end`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, cast

from httptools import HttpParserCallbackError, HttpParserError, HttpParserUpgrade, HttpResponseParser

from jishi.core.retry import Failure
from jishi.gateway import balancing, failover, hedging, relay, tunnel
from jishi.gateway.headers import (
    CONNECTION,
    FORWARD,
    LENGTH,
    RESPONSE_ACTIONS,
    TE,
    UPGRADE,
    connection_tokens,
    drop_named,
    response_action,
)

if TYPE_CHECKING:
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.pool import Pool
    from jishi.registry.policies import UpstreamTLS

__all__ = ["MAX_RESPONSE_HEAD", "PoolKey", "UpstreamConnection"]

log = logging.getLogger(__name__)

LOST, TIMEOUT, PROTOCOL = Failure.LOST, Failure.TIMEOUT, Failure.PROTOCOL
_ACTIONS_GET = RESPONSE_ACTIONS.get
_CRLF = b"\r\n"

WRITE_HIGH = 256 * 1024
MAX_RESPONSE_HEAD = 64 * 1024  # bytes read without the end of a response head (with any 1xx before it) → PROTOCOL
_PLAIN_CONNECTION = frozenset({b"close", b"keep-alive", b"upgrade"})

# What idle connections are pooled by: (address, port) in plain HTTP, (address, port, settings) over TLS.
PoolKey = tuple[str, int] | tuple[str, int, "UpstreamTLS"]


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to an instance; see the module doc."""

    __slots__ = (
        "_loop",
        "_writes",
        "addr",
        "chunked",
        "close_delimited",
        "closed",
        "deadline",
        "ended",
        "got_bytes",
        "has_length",
        "head_lines",
        "head_read",
        "hedged",
        "idle_since",
        "invalid",
        "keep",
        "key",
        "last_read",
        "named",
        "no_body",
        "out",
        "owner",
        "parser",
        "pool",
        "queued",
        "queued_size",
        "reused",
        "status",
        "timeout",
        "transport",
        "upgraded",
    )

    def __init__(self, pool: Pool, addr: tuple[str, int], key: PoolKey | None = None) -> None:
        self.pool = pool
        self.addr = addr
        self.key: PoolKey = addr if key is None else key  # its stack in the pool
        self._loop = pool.loop
        self._writes = pool.writes
        self.out: list[bytes] = []  # request bytes to write at the end of this loop turn (`jishi.gateway.writes`)
        self.queued = False
        self.queued_size = 0  # request body bytes in `out` from `write` this loop turn
        self.transport: asyncio.Transport | None = None
        self.parser = HttpResponseParser(self)
        self.owner: ClientConnection | None = None
        self.closed = False
        self.reused = False
        self.got_bytes = False
        self.idle_since = 0.0
        self.last_read = 0.0
        self.timeout = 0.0
        self.deadline = 0.0  # loop time the request's total timeout runs out, body included (0: none)
        self.no_body = False  # the request was HEAD: the response has no body whatever its headers say
        self.status = 0  # of the final response, once its head is complete
        self.head_read = 0  # bytes read while the response head was incomplete
        self.head_lines: list[bytes] = []  # headers to forward: name, ": ", value, CRLF for each
        self.named: list[bytes] | None = None  # header names the response's Connection header lists (lower-case)
        self.invalid = ""  # why the response head cannot be relayed (found while parsing it)
        self.ended: ClientConnection | None = None  # a response ended during this read: its owner, until the read
        self.keep = False  # ... and whether this connection may be kept for another request
        self.has_length = False
        self.chunked = False
        self.close_delimited = False
        self.upgraded = False  # the instance answered 101 to an upgrade request
        self.hedged: object = None  # a request being hedged: its `Hedging` or `HedgeTry` (`jishi.gateway.hedging`)

    # --- driven by the owner

    def send(
        self,
        owner: ClientConnection,
        data: bytes,
        head_request: bool,
        read_timeout: float,
        now: float,
        deadline: float = 0.0,
    ) -> None:
        """Bind to `owner` and send the request (head and any body so far) at loop time `now`; the response goes
        to `owner`. `deadline`: the loop time the whole response must have arrived by (0: none)."""
        self.owner = owner
        self.no_body = head_request
        self.got_bytes = False
        self.status = 0
        self.head_read = 0
        self.head_lines = []
        self.has_length = self.chunked = False
        self.close_delimited = False
        self.timeout = read_timeout
        self.deadline = deadline
        self.last_read = now
        self.pool.busy.add(self)
        self.out.append(data)
        self._writes.add(self)

    def write(self, *pieces: bytes, size: int = -1) -> None:
        """Send `pieces` (more of the request body, `size` bytes if the caller counted them) with this loop
        turn's writes, or at once past `jishi.gateway.writes.BATCH_MAX` bytes this turn, so that the instance's
        flow control (`pause_writing`, which stops reading the client) acts before the next read of the client."""
        self.out += pieces
        self._writes.queue(self, sum(map(len, pieces)) if size < 0 else size)

    def write_now(self) -> None:
        """Write what is queued, now (for `jishi.gateway.writes`); dropped if the connection is closed."""
        self.queued = False
        out = self.out
        if not out:
            return
        self.out = []
        if self.closed or self.transport is None:
            return  # aborted or lost: the request's failure is handled where that happened
        if len(out) == 1:
            self.transport.write(out[0])
        else:
            self.transport.writelines(out)

    def detach(self) -> None:
        """Forget the owner and stop watching for a read timeout (the exchange is over)."""
        owner = self.owner
        self.owner = None
        self.pool.busy.discard(self)
        if owner is not None:
            ex = owner.active
            if ex is not None and ex.tracked and ex.conn is self:
                balancing.end(owner, ex, 0)  # abandoned (the client went away): no verdict on the instance
            if self.hedged is not None and owner.closed:
                hedging.client_gone(self)

    def abort(self) -> None:
        """Drop the connection now: it is in an unknown state."""
        self.detach()
        self.closed = True
        self.out = []
        if self.transport is not None:
            self.transport.abort()

    # --- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH)

    def data_received(self, data: bytes) -> None:
        owner = self.owner
        if owner is None:
            # Bytes on an idle connection: the instance is confused or closing. Never reuse it.
            self.closed = True
            self.pool.forget(self)
            assert self.transport is not None
            self.transport.abort()
            return
        self.got_bytes = True
        self.last_read = self._loop.time()
        try:
            self.parser.feed_data(data)
        except HttpParserCallbackError:
            self._broke(owner)
        except HttpParserError as exc:
            if self.ended is not None:
                self._stray(f"bytes that are not HTTP ({exc})")
            else:
                self._fail(PROTOCOL, f"invalid HTTP response: {exc}")
        except HttpParserUpgrade as exc:
            if self.upgraded:
                tunnel.switch(owner, self, data[exc.args[0] :])
                return
            self._fail(PROTOCOL, "the instance switched protocols without being asked to")
        if not self.status and not self.closed:
            self.head_read += len(data)
            if self.head_read > MAX_RESPONSE_HEAD:
                self._fail(PROTOCOL, f"the response head exceeds {MAX_RESPONSE_HEAD // 1024} KiB")
        ended = self.ended
        if ended is not None:
            # Only now, after the whole read was parsed, can the connection go back to the pool.
            self.ended = None
            if self.no_body:
                self.parser = HttpResponseParser(self)  # it expects the body the response announced
            ex = ended.active
            try:
                relay.done(ended, self, self.keep)
            except Exception:  # a bug of the gateway's own (policies, stats, logs): the client connection ends
                self.abort()
                if ex is None:
                    log.exception("gateway: internal error ending a response from %s:%d", *self.addr)
                else:
                    ended.failed(ex, "ending the response to")
        owner.flush_read(len(data))  # written with the loop turn's writes, or at once if the turn read much

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        owner = self.owner
        if owner is None:
            self.pool.forget(self)
            return
        if self.close_delimited and self.status >= 200:
            ex = owner.active
            if ex is not None and ex.tracked:
                balancing.end(owner, ex, self.status)
            self.detach()
            relay.done(owner, self, False)
        else:
            self._fail(LOST, f"connection closed: {exc}" if exc else "connection closed by the instance")
        owner.flush()

    def pause_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_pause_writing()

    def resume_writing(self) -> None:
        if self.owner is not None:
            self.owner.upstream_resume_writing()

    # --- httptools callbacks

    def on_message_begin(self) -> None:
        if self.ended is not None:
            self._stray("the start of another response")

    def on_header(self, name: bytes, value: bytes) -> None:
        action = _ACTIONS_GET(name)
        if action is None:
            action = response_action(name)
        if action == FORWARD:
            self.head_lines += (name, b": ", value, _CRLF)
        elif action == LENGTH:
            self.has_length = True
            self.head_lines += (name, b": ", value, _CRLF)
        elif action == TE:
            if self.chunked or value.lower() != b"chunked":
                # The gateway only undoes chunked: any other coding would reach the client undeclared.
                self.invalid = f"the instance sent an unknown Transfer-Encoding: {value.decode('latin-1')!r}"
            self.chunked = True
        elif action == CONNECTION:
            if value.lower() not in _PLAIN_CONNECTION:
                self.named = (self.named or []) + connection_tokens(value)
        elif action == UPGRADE and self.parser.get_status_code() == 101:
            self.head_lines += (name, b": ", value, _CRLF)  # names the protocol switched to (`tunnel.switch`)

    def on_headers_complete(self) -> None:
        if self.invalid:
            self._fail(PROTOCOL, self.invalid)
            return
        if self.named is not None:
            self.head_lines = drop_named(self.head_lines, self.named)  # hop-by-hop too (RFC 9110 §7.6.1)
            self.named = None
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            owner = self.owner
            if status == 101 and owner is not None and owner.active is not None and owner.active.upgrade:
                self.upgraded = True  # status stays 0: the switch happens after the head (data_received)
                if owner.active.tracked:
                    balancing.end(owner, owner.active, 101)
                return
            self.head_lines = []  # an interim response (100 Continue): wait for the final one
            self.has_length = self.chunked = False
            return
        if self.hedged is not None and hedging.on_head(self):
            return  # a hedge's answer after its request was over: dropped with its connection
        owner = self.owner
        if owner is None:
            return  # a response after the one that ended this read (`on_message_begin`)
        if status >= 500:
            ex = owner.active
            assert ex is not None and ex.route is not None
            rules = ex.route.retry
            if rules is not None and rules.on_status and failover.retry_status(owner, ex, self, status):
                return  # dropped: the request went on to another instance (this connection is closed)
        has_length = self.has_length
        self.status = status
        # The read timer stays armed: it also bounds silence between body bytes.
        bodyless = self.no_body or status == 204 or status == 304
        self.close_delimited = not bodyless and not has_length and not self.chunked
        relay.head(owner, status, self.head_lines, bodyless, has_length)
        if self.no_body:
            # httptools cannot be told the request was HEAD: the response ends here (a fresh parser follows).
            self._complete()

    def on_body(self, body: bytes) -> None:
        owner = self.owner
        if owner is not None and not self.no_body:
            relay.body(owner, body)
        elif self.ended is not None:
            self._stray("a body after a response that has none")

    def on_message_complete(self) -> None:
        if self.status == 0 or self.no_body:
            return  # an interim response ended, or the HEAD response was already completed
        self._complete()

    def _complete(self) -> None:
        """The response ended; `data_received` finishes it once the rest of the read is parsed: anything after
        it there (`_stray`) means the instance is out of step, and the connection is not kept."""
        owner = self.owner
        if owner is None:
            return  # a response after the one that ended this read (`on_message_begin`)
        self.owner = None
        self.pool.busy.discard(self)
        ex = owner.active
        if ex is not None and ex.tracked:
            balancing.end(owner, ex, self.status)
        self.ended = owner
        self.keep = self.parser.should_keep_alive() and not self.close_delimited

    def _stray(self, what: str) -> None:
        """The instance sent `what` after a complete response (a body for HEAD, 204 or 304, more than its
        Content-Length, an unrequested response): the response stands, the connection is closed after it."""
        if self.keep:
            self.keep = False
            log.warning("instance %s:%d sent %s after a complete response; closing its connection", *self.addr, what)

    # --- failures

    def _broke(self, owner: ClientConnection) -> None:
        """A callback of the gateway's own (relay, failover, hedging) raised: a bug of the gateway, not a fault of
        the instance. Logged with its traceback (called in the `except` block); the connection is dropped with no
        verdict on the instance; the client gets a 500 (`ClientConnection.failed`)."""
        ex = owner.active if self.ended is None else None
        if ex is None or ex.conn is not self:  # its exchange is over, or on another try
            log.exception("gateway: internal error relaying a response from %s:%d", *self.addr)
            self.keep = False
            if self.ended is None:
                self.abort()
            return
        self.abort()  # detached: an abandoned try, no verdict for outlier detection
        ex.conn = None
        owner.failed(ex, "relaying the response to")

    def timed_out(self, now: float) -> None:
        """Nothing was read for `timeout` seconds while a response was awaited, or the request's total timeout
        passed while its response was still coming (the pool's check found it at loop time `now`)."""
        owner = self.owner
        if self.deadline and now >= self.deadline and self.status:
            message = "the response did not end within the route's total timeout"
        else:
            message = f"no response from the instance within {self.timeout:g} s"
        if owner is not None and owner.write_paused:
            message += " (the client was not reading it: the gateway had stopped reading the instance)"
        self._fail(TIMEOUT, message)
        if owner is not None:
            owner.flush()

    def _fail(self, kind: Failure, message: str) -> None:
        if self.hedged is not None and hedging.on_fail(self, kind, message):
            return  # a hedge failed: its try ended; the request goes on with its other tries
        owner = self.owner
        if owner is not None:
            ex = owner.active
            if ex is not None and ex.tracked and ex.conn is self:
                # The verdict for outlier detection: a reset as 502, a timeout as 504; a pooled connection the
                # instance closed while idle says nothing about it, nor does a timeout while the client's full
                # write buffer had this connection's reading stopped (a slow client, not a slow instance).
                stale = (kind is LOST and self.reused and not self.got_bytes) or (
                    kind is TIMEOUT and owner.write_paused
                )
                balancing.end(owner, ex, 0 if stale else 504 if kind is TIMEOUT else 502)
        self.abort()
        if owner is not None:
            relay.failed(owner, self, kind, message)
