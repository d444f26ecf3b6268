"""Relaying an instance's response to the client: the head the client gets, the body's framing, the ending.

The instance connection (`jishi.gateway.upstream`) calls these with the client connection it is bound to:

    head(client, status, headers, bodyless, has_length)   the response head is complete
    body(client, data)                                    a piece of the body
    done(client, conn, keep_alive)                        the response is complete: pool or drop `conn`
    failed(client, conn, kind, message)                   the try failed: `jishi.gateway.failover` decides

Everything is appended to the client's `out` and written once per event. The head is the standard status
line, the instance's headers (hop-by-hop ones dropped, see `jishi.gateway.headers`) and
the framing the gateway adds: a body without Content-Length goes to an HTTP/1.1 client chunked and to an
HTTP/1.0 client until the connection closes; `Connection: close` when the client connection ends after it,
`Connection: keep-alive` for an HTTP/1.0 client that keeps it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jishi.core.retry import Failure
from jishi.gateway import failover, hedging
from jishi.gateway.responses import STATUS_LINES, status_line

if TYPE_CHECKING:
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.upstream import UpstreamConnection

__all__ = ["body", "done", "failed", "head"]

LOST = Failure.LOST
_CRLF = b"\r\n"
_CHUNK_END = b"0\r\n\r\n"
_TE_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_CONN_CLOSE = b"Connection: close\r\n"
_CONN_KEEP = b"Connection: keep-alive\r\n"


def head(client: ClientConnection, status: int, headers: list[bytes], bodyless: bool, has_length: bool) -> None:
    """The response head is complete; `headers` are the pieces of its header lines to forward."""
    ex = client.active
    assert ex is not None
    ex.status = status
    ex.resp_started = True
    edits = ex.response_edits
    if edits is not None:
        headers = edits.apply(headers)  # the route's rewrite: response headers set/add/remove
    out = client.out
    out.append(STATUS_LINES.get(status) or status_line(status))
    out += headers
    # (A refused or upgrade request after requests still queued ends the connection after their answers.)
    close = (
        not ex.keep_alive
        or ((client.broken is not None or client.parser is None) and not client.queue)
        or client.proxy.stopping
    )
    if not close and ex.http11 and (has_length or bodyless):
        out.append(_CRLF)  # the usual case: nothing to add
        return
    if not bodyless and not has_length:
        if ex.http11:
            ex.resp_chunked = True
            out.append(_TE_CHUNKED)
        else:
            close = True  # an HTTP/1.0 client reads the body to the end of the connection
    if close:
        out.append(_CONN_CLOSE)
    elif not ex.http11:
        out.append(_CONN_KEEP)
    out.append(_CRLF)
    ex.resp_close = close


def body(client: ClientConnection, data: bytes) -> None:
    """A piece of the response body."""
    ex = client.active
    assert ex is not None
    ex.bytes_out += len(data)
    if ex.resp_chunked:
        client.out += (b"%x\r\n" % len(data), data, _CRLF)
    else:
        client.out.append(data)


def done(client: ClientConnection, conn: UpstreamConnection, keep_alive: bool) -> None:
    """The response is complete: give `conn` back to the pool (or drop it) and finish the exchange."""
    ex = client.active
    assert ex is not None
    if ex.resp_chunked:
        client.out.append(_CHUNK_END)
    ex.conn = None
    if client.write_paused and conn.transport is not None and not conn.closed:
        conn.transport.resume_reading()
    now = client.loop.time()
    if keep_alive and ex.req_done and not conn.closed:
        client.pool.release(conn, now)
    else:
        conn.abort()
    client.finish(ex, now)


def failed(client: ClientConnection, conn: UpstreamConnection, kind: Failure, message: str) -> None:
    """The try on `conn` failed (lost, timed out, not HTTP)."""
    ex = client.active
    if ex is None or ex.conn is not conn:
        return
    ex.conn = None
    peer = ex.peer
    assert peer is not None
    if ex.hedge is not None:
        stale = kind is LOST and conn.reused and not conn.got_bytes
        if hedging.promote(client, ex, peer, kind, message, stale):
            return  # a hedge in flight goes on as the request's try
    failover.after_failure(
        client, ex, peer, kind, message, reused=conn.reused, got_bytes=conn.got_bytes, timed_out=False
    )
