"""The client connection's reading side: what `ClientConnection` does with the bytes a client sends.

    data_received(client, data)             feed httptools; a parse error or refusal goes to `closing`
    on_url / on_header / on_headers_complete / on_body / on_message_complete
                                            httptools' request callbacks: build the `Exchange`, then hand it
                                            to `dispatch.start` (or queue it behind the one being answered)
                                            and its body to `dispatch.body`

These are `ClientConnection`'s methods (`jishi.gateway.downstream` assigns the functions in its class body, so a
call costs what a method defined there costs: no extra layer); `client` is the connection. httptools looks the
callbacks up on the protocol; it skips those a protocol does not define, so there is no on_message_begin: the URL
starts a request.

A head is measured (`limits.check_head`) when it was not complete in the read that began it, or when it came in
a read larger than max_head; ambiguous framing and too large a body are refused (`limits`). A request that comes
while another is being answered is queued, with reading paused (`P_PIPELINE`), until that one is finished. After
an upgrade request's head nothing more is parsed: the bytes after it are kept in `upgrade_rest` for the tunnel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from jishi.gateway import closing, dispatch, limits
from jishi.gateway.exchange import REPLAY_LIMIT, Exchange, TrailerSink
from jishi.gateway.headers import (
    CONNECTION,
    CONTENT_LENGTH,
    EXPECT,
    FORWARD,
    FORWARDED_FOR,
    HOST,
    REQUEST_ACTIONS,
    TRANSFER_ENCODING,
    UPGRADE,
    connection_tokens,
    drop_named,
    request_action,
)

if TYPE_CHECKING:
    from jishi.gateway.downstream import ClientConnection

__all__ = [
    "CHUNK_FRAMING",
    "P_PIPELINE",
    "data_received",
    "on_body",
    "on_header",
    "on_headers_complete",
    "on_message_complete",
    "on_url",
]

# A chunked request body's bytes beyond its data (chunk sizes, extensions, CRLFs, trailer fields) may come to
# max_head plus this much per piece of data: a trailer section is bounded like a head (llhttp keeps a header value
# in memory until it ends, and httptools grows it by concatenation, so an endless trailer field would hold the
# event loop for seconds), and sizes with extensions keep their room.
CHUNK_FRAMING = 64
P_PIPELINE = 4  # the client connection's pause reason while a pipelined request waits (one of `downstream`'s bits)
_P_CLOSING = closing.P_CLOSING
_CRLF = b"\r\n"
_CHUNK_END = b"0\r\n\r\n"
_ACTIONS_GET = REQUEST_ACTIONS.get
_TRAILERS = TrailerSink()


def data_received(client: ClientConnection, data: bytes) -> None:
    parser = client.parser
    if parser is None:
        return
    if len(data) > client.max_head:
        _read_big(client, parser, data)
        return
    ex = client.parsing
    if ex is not None and ex.chunked_req and ex.method:
        ex.chunked_raw += len(data)  # (a chunked body arriving: its framing and trailers are measured below)
    try:
        parser.feed_data(data)
    except HttpParserUpgrade as exc:
        _upgrade_requested(client, data[exc.args[0] :])
    except HttpParserError as exc:
        closing.parse_failed(client, exc)
    else:
        ex = client.parsing
        if ex is not None:
            if not ex.method:
                closing.head_incomplete(client, ex, len(data))
            elif _framing_over(client, ex):
                closing.framing_too_large(client)
    if client.out:
        client.flush()


def _framing_over(client: ClientConnection, ex: Exchange) -> bool:
    """Has the chunked body of `ex` brought more besides its data than `CHUNK_FRAMING` allows?"""
    return ex.chunked_req and ex.chunked_raw - ex.body_in > client.max_head + ex.chunks * CHUNK_FRAMING


def _upgrade_requested(client: ClientConnection, rest: bytes) -> None:
    """The upgrade request is complete: nothing after it is parsed. If the instance switches protocols `rest`
    goes to it (`jishi.gateway.tunnel`); otherwise the connection closes after the response."""
    client.parser = None
    client.pause(_P_CLOSING)
    client.upgrade_rest = rest


def _read_big(client: ClientConnection, parser: HttpRequestParser, data: bytes) -> None:
    """A read larger than max_head: every head completed in it is measured."""
    client.big_read = True
    if not client.head_since:
        client.head_since = client.loop.time()
    ex = client.parsing
    if ex is not None and ex.chunked_req and ex.method:
        ex.chunked_raw += len(data)
    try:
        parser.feed_data(data)
    except HttpParserUpgrade as exc:
        _upgrade_requested(client, data[exc.args[0] :])
    except HttpParserError as exc:
        closing.parse_failed(client, exc)
    finally:
        client.big_read = False
    ex = client.parsing
    if client.parser is not None and ex is not None and not ex.method:
        closing.head_incomplete(client, ex, len(data))  # the timer goes on from this read
    else:
        client.head_since = 0.0
        if client.parser is not None and ex is not None and _framing_over(client, ex):
            closing.framing_too_large(client)
    if client.out:
        client.flush()


def on_url(client: ClientConnection, url: bytes) -> None:
    ex = client.parsing
    if ex is None:
        client.parsing = client.headers_to = Exchange(client.loop.time(), url)
    else:
        ex.url += url


def on_header(client: ClientConnection, name: bytes, value: bytes) -> None:
    action = _ACTIONS_GET(name)
    if action is None:
        action = request_action(name)
    ex = client.headers_to
    assert ex is not None
    if action == FORWARD:
        ex.lines += (name, b": ", value, _CRLF)
    elif action == HOST:
        if ex.host is not None:
            limits.refuse(400, "bad_request", "the request has more than one Host header")
        ex.host = value
        ex.lines += (name, b": ", value, _CRLF)
    elif action == CONTENT_LENGTH:
        # (llhttp has checked the value; it lets trailing whitespace through, which the limits must not miss)
        ex.content_length = int(value) if value.isdigit() else _length(value)
        ex.lines += (name, b": ", value, _CRLF)
    else:
        if action == FORWARDED_FOR:
            ex.xff = value if ex.xff is None else ex.xff + b", " + value
        elif action == TRANSFER_ENCODING:
            parser = client.parser
            assert parser is not None
            if value != b"chunked" or parser.get_http_version() != "1.1":
                limits.transfer_encoding(parser, value)
            ex.chunked_req = True
        elif action == CONNECTION:
            ex.conn_header = True
            extra = connection_tokens(value)
            if extra:
                ex.conn_tokens = (ex.conn_tokens or []) + extra
        elif action == EXPECT:
            ex.expect_continue = value.lower() == b"100-continue"
        elif action == UPGRADE:
            ex.upgrade = value


def _length(value: bytes) -> int:
    """A Content-Length value with whitespace around its digits (-1 if it is not digits at all)."""
    digits = value.strip(b" \t")
    return int(digits) if digits.isdigit() else -1


def on_headers_complete(client: ClientConnection) -> None:
    ex = client.parsing
    parser = client.parser
    assert ex is not None and parser is not None
    ex.method = parser.get_method()
    if client.head_since:
        if not client.big_read:
            client.head_since = 0.0
        limits.check_head(ex, client.max_head)
    keep_alive = ex.keep_alive = parser.should_keep_alive()  # an upgrade request also ends the connection
    if ex.conn_header:
        ex.http11 = parser.get_http_version() == "1.1"
        if ex.conn_tokens:
            ex.lines = drop_named(ex.lines, ex.conn_tokens)
        if ex.upgrade is not None:
            if parser.should_upgrade() and ex.http11:  # (an HTTP/1.0 request's Upgrade is ignored: RFC 9110 §7.8)
                ex.lines += (b"Connection", b": ", b"Upgrade", _CRLF, b"Upgrade", b": ", ex.upgrade, _CRLF)
            else:
                ex.upgrade = None
    else:
        ex.http11 = keep_alive  # without a Connection header only HTTP/1.1 is kept alive
    if ex.content_length > client.big_body:
        if ex.content_length > REPLAY_LIMIT:
            ex.replayable = False
        if ex.content_length > client.max_body:
            message = f"the request body is {ex.content_length} bytes; the limit is {client.max_body}"
            limits.refuse(413, "body_too_large", message)
    if ex.expect_continue and parser.get_http_version() != "1.1":
        ex.expect_continue = False  # an HTTP/1.0 client gets no 100 Continue (RFC 9110 §10.1.1)
    if ex.chunked_req:
        client.headers_to = _TRAILERS  # header callbacks from now on are the body's trailer fields: dropped
    if client.active is None and not client.write_paused:
        dispatch.start(client, ex)
    else:  # its turn comes when the one before it is finished, or when the client reads again
        client.queue.append(ex)
        client.pause(P_PIPELINE)


def on_body(client: ClientConnection, body: bytes) -> None:
    client.body_read = True  # the body moves (`limits.body_stalled`)
    ex = client.parsing
    assert ex is not None
    if ex.finished:
        return  # answered already (an error, or an early response): the rest of the body is discarded
    if ex.chunked_req:
        ex.body_in += len(body)
        ex.chunks += 1
        if ex.body_in > client.max_body:
            message = f"the chunked request body exceeds the limit of {client.max_body} bytes"
            limits.refuse(413, "body_too_large", message)
        dispatch.body(client, ex, b"%x\r\n" % len(body), body, _CRLF)
    else:
        dispatch.body(client, ex, body)


def on_message_complete(client: ClientConnection) -> None:
    ex = client.parsing
    assert ex is not None
    client.parsing = None
    ex.req_done = True
    if ex.chunked_req and not ex.finished:
        dispatch.body(client, ex, _CHUNK_END)
