"""Ending a client connection: refusals that end its request stream, the lingering close, and the header and
keep-alive timeouts the proxy's housekeeping applies.

    parse_failed(client, exc)                  the parser stopped: the refusal a callback raised, or 400 / 500
    head_incomplete(client, ex, read)          a read ended inside a head: start its timer; 431 when too large
    refuse(client, status, code, message)      the request being parsed is refused; nothing more is read
    write_refusal_and_close(client, refusal)   answer (status, code, message) with a JSON error and close
    close(client)                              close after what was written, lingering if reading stopped early
    close_if_slow(client, now) -> bool         408 for a request head older than the header timeout, or for a
                                               request body stalled longer than the body timeout
    close_if_idle(client, cutoff) -> bool      close a connection idle since before `cutoff`

A refused request is answered with a JSON error, after which the connection closes, lingering: what the client
still sends is read and dropped for up to `LINGER` seconds, so the answer is not lost to a reset. A refusal that
comes while earlier pipelined requests are still being answered waits for them (`ClientConnection.broken`): they
are answered in turn (none of them with `Connection: close`) before the refusal, which closes the connection.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from httptools import HttpParserCallbackError, HttpParserError

from jishi.gateway import limits
from jishi.gateway.responses import error_response

if TYPE_CHECKING:
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange

__all__ = [
    "LINGER",
    "P_CLOSING",
    "body_timed_out",
    "close",
    "close_if_idle",
    "close_if_slow",
    "framing_too_large",
    "head_incomplete",
    "parse_failed",
    "refuse",
    "write_refusal_and_close",
]

log = logging.getLogger(__name__)

LINGER = 2.0  # seconds a refused connection is still read (and dropped) before it is closed
P_CLOSING = 8  # the client connection's pause reason while it closes (one of `downstream`'s _P_* bits)


def parse_failed(client: ClientConnection, exc: HttpParserError) -> None:
    """The parser stopped: refuse with what a callback raised (`limits.Refused`), else 500 or 400."""
    refused = limits.refusal_of(exc)
    if refused is not None:
        refuse(client, refused.status, refused.code, refused.message)
    elif isinstance(exc, HttpParserCallbackError):
        log.error("client %s: request handling failed", client.client_ip.decode(), exc_info=exc.__context__)
        refuse(client, 500, "internal_error", "the gateway failed while reading the request")
    else:
        refuse(client, 400, "bad_request", f"malformed HTTP request: {exc}")


def head_incomplete(client: ClientConnection, ex: Exchange, read: int) -> None:
    """A read ended inside a request head: start its header timer; refuse it once it is too large."""
    size, first = limits.incomplete_head_size(ex, read)
    if first and not client.head_since:
        client.head_since = client.loop.time()
    if size > client.max_head:
        refuse(client, 431, "head_too_large", f"the request head exceeds the limit of {client.max_head} bytes")


def framing_too_large(client: ClientConnection) -> None:
    """A chunked request body carries more than its data allows besides (an endless trailer field or chunk
    extension): refused like a head over the limit."""
    message = f"the chunked request body's framing and trailer fields exceed the limit of {client.max_head} bytes"
    refuse(client, 431, "head_too_large", message)


def refuse(client: ClientConnection, status: int, code: str, message: str) -> None:
    """The request being parsed is refused; after it nothing more can be read from this connection."""
    client.parser = None
    client.pause(P_CLOSING)
    ex = client.parsing
    client.parsing = None
    if ex is not None and ex is client.active:
        # The request being proxied has a broken body: it cannot be completed.
        if ex.conn is not None:
            ex.conn.abort()
            ex.conn = None
        if ex.resp_started:
            ex.resp_close = True
            client.finish(ex)
        else:
            ex.keep_alive = False
            client.error(ex, status, code, message)
        return
    if ex is not None and ex in client.queue:
        client.queue.remove(ex)
    if client.active is None and not client.queue:
        write_refusal_and_close(client, (status, code, message))
    else:
        client.broken = (status, code, message)  # answered after the requests before it


def write_refusal_and_close(client: ClientConnection, refusal: tuple[int, str, str]) -> None:
    status, code, message = refusal
    log.info("client %s: %d %s", client.client_ip.decode(), status, message)
    client.out.append(error_response(status, code, message, close=True))
    client.parser = None
    close(client)


def close(client: ClientConnection) -> None:
    """Close after what was written. When reading stopped early (a refused request) the client may still be
    sending, and closing with unread bytes resets the connection, which can destroy the answer before the
    client reads it; so the close lingers: the write side is shut, what arrives is read and dropped, and
    the connection closes at the client's EOF or after `LINGER` seconds."""
    if client.broken:
        refusal, client.broken = client.broken, None
        write_refusal_and_close(client, refusal)
        return
    client.write_now()
    transport = client.transport
    if client.closed or transport is None:
        client.closed = True
        return
    client.closed = True
    if client.parser is None and transport.can_write_eof():
        client.lingering = client.loop.time()
        transport.write_eof()
        client.paused = 0
        transport.resume_reading()
    else:
        transport.close()


def close_if_slow(client: ClientConnection, now: float) -> bool:
    """Answer 408 and close if a request head began more than the header timeout ago and is still
    incomplete, or a request body had no byte for the body timeout (`limits.body_stalled`); end a lingering
    close after `LINGER` seconds."""
    if client.lingering:
        if client.lingering <= now - LINGER and client.transport is not None:
            client.transport.close()
        return True
    watching = client.parsing is not None or client.body_ex is not None  # (and then let go of a finished one)
    stalled = limits.body_stalled(client, now) if watching else None
    if stalled is not None:
        body_timed_out(client, stalled)
        return True
    since = client.head_since
    cutoff = now - client.proxy.header_timeout
    if not since or since > cutoff or client.active is not None or client.queue or client.closed:
        return False
    client.parser = None
    client.parsing = None
    client.broken = None
    timeout = client.proxy.header_timeout
    write_refusal_and_close(client, (408, "request_timeout", f"the request head did not arrive within {timeout:g} s"))
    return True


def body_timed_out(client: ClientConnection, ex: Exchange) -> None:
    """The body of `ex` stalled: 408 if no response has begun, the instance connection dropped, and the
    connection closes. A request answered already (its body read only to be dropped) is just closed."""
    timeout = client.proxy.body_timeout
    log.info("client %s: request body stalled for %g s; closing", client.client_ip.decode(), timeout)
    if ex.finished:
        client.parser = None
        client.parsing = None
        close(client)
        return
    message = f"the request body stalled: no byte arrived for {timeout:g} s (the body timeout)"
    refuse(client, 408, "request_timeout", message)


def close_if_idle(client: ClientConnection, cutoff: float) -> bool:
    """Close the connection if no request is in progress and it was idle since before `cutoff`."""
    if client.lingering:
        if client.transport is not None:
            client.transport.close()
        return True
    if client.active is None and client.parsing is None and not client.queue and client.idle_since <= cutoff:
        close(client)
        return True
    return False
