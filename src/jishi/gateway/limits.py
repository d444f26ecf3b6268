"""What a client may send: framing the gateway refuses, and the size and time limits on a request.

httptools (llhttp, strict) already rejects most request smuggling: Content-Length with Transfer-Encoding,
duplicate or invalid Content-Length, bad chunk sizes or chunk framing, obs-fold, bare CR or LF, invalid header
names or values (400, "malformed HTTP request: ..."). Besides it the gateway refuses, from the header callbacks:

    two Host headers                              400
    Transfer-Encoding in an HTTP/1.0 request      400 (its framing cannot be trusted)
    a transfer coding other than chunked          501
    a head over the proxy's `max_head_size`       431
    a body over the proxy's `max_body_size`       413 (at once for a Content-Length, while streaming if chunked)
    a body with no byte for `body_timeout`        408 (`body_stalled`, from the proxy's housekeeping)

A refusal raised inside a parser callback is a `Refused` exception; httptools wraps it in an
`HttpParserCallbackError` whose `__context__` it is (`refusal_of`).

Measuring a head costs nothing in the usual case: a head that starts and ends in one read no larger than the
limit cannot be too large. Only a read larger than the limit, a head spread over several reads, or the first
head of a connection is measured (`check_head` when the head is complete, `incomplete_head_size` after each
read that ends inside it); a read ending inside a head also starts the header timer that the proxy's
housekeeping turns into a 408 (`ClientConnection.close_if_slow`).

Watching a body costs one attribute store per read: `on_body` sets `client.body_read`. The housekeeping, every
0.5 s, takes the flag down and notes the time it saw it (`client.body_since`, for the exchange `client.body_ex`);
a body whose flag stays down for `body_timeout` after that is stalled (`body_stalled`). A body counts as moving
while the gateway itself holds reading back (flow control, a pipelined request waiting) and, for
`Expect: 100-continue`, until the gateway has sent the request on (and with it the `100 Continue`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from httptools import HttpParserError, HttpRequestParser

    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange

__all__ = [
    "Refused",
    "body_stalled",
    "check_head",
    "head_size",
    "incomplete_head_size",
    "refusal_of",
    "refuse",
    "transfer_encoding",
]


class Refused(Exception):
    """A request the gateway will not take: answered with `status` and a JSON error, then the connection closes."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def refuse(status: int, code: str, message: str) -> NoReturn:
    raise Refused(status, code, message)


def refusal_of(exc: HttpParserError) -> Refused | None:
    """The `Refused` a parser callback raised, if that is what stopped the parser."""
    context = exc.__context__
    return context if isinstance(context, Refused) else None


def transfer_encoding(parser: HttpRequestParser, value: bytes) -> None:
    """Only `Transfer-Encoding: chunked`, and only in HTTP/1.1."""
    if parser.get_http_version() != "1.1":
        refuse(400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request: its framing cannot be trusted")
    if value.strip().lower() != b"chunked":
        message = f"Transfer-Encoding {value.decode('latin-1')!r} is not supported (only chunked is)"
        refuse(501, "not_implemented", message)


def head_size(ex: Exchange) -> int:
    """The size of the head parsed so far: target, every kept header with its ": " and CRLF, X-Forwarded-For.

    Headers the gateway drops (hop-by-hop ones, X-Real-IP, ...) are not counted once complete: they are not
    kept and never reach an instance. While a head is still arriving every byte read counts
    (`incomplete_head_size`)."""
    xff = ex.xff
    return len(ex.url) + sum(map(len, ex.lines)) + (len(xff) if xff is not None else 0)


def check_head(ex: Exchange, limit: int) -> None:
    """The complete head of `ex`, measured exactly (plus the request line's method and version)."""
    size = head_size(ex) + len(ex.method) + 12
    if size > limit:
        refuse(431, "head_too_large", f"the request head is {size} bytes; the limit is {limit}")


def incomplete_head_size(ex: Exchange, read: int) -> tuple[int, bool]:
    """A read of `read` bytes ended inside the head of `ex`: its size so far, and whether this read began it.

    The size counted is the head's complete headers at its first read plus every later read (a header still in
    the parser's buffer at the first read is missed: the bound is one read more than the limit, never less).
    """
    first = ex.head_base < 0
    if first:
        ex.head_base = head_size(ex)
    else:
        ex.head_raw += read
    return ex.head_base + ex.head_raw, first


def body_stalled(client: ClientConnection, now: float) -> Exchange | None:
    """The request whose body is still arriving but had no byte for the proxy's `body_timeout`, if any (called
    every 0.5 s: a body's last read is known to within one call, so a stall is found late, never early)."""
    ex = client.parsing
    if ex is None or not ex.method or client.parser is None:
        client.body_ex = None  # no body is being read
        return None
    if (
        ex is not client.body_ex
        or client.body_read
        or client.paused
        or (ex.expect_continue and ex.peer is None and not ex.finished)
    ):
        client.body_ex, client.body_read, client.body_since = ex, False, now
        return None
    return ex if now - client.body_since >= client.proxy.body_timeout else None
