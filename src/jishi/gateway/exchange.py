"""One request/response exchange through the gateway, and the header rules it applies.

Request headers forwarded to an instance: all of the client's, except hop-by-hop ones (Connection, Keep-Alive,
Proxy-Connection, TE, Trailer, Upgrade, any header named in Connection) and the ones the gateway sets itself:

    Host               kept as the client sent it (added as the instance address if the client sent none)
    X-Forwarded-For    the client's value with the client address appended
    X-Real-IP          the client address
    X-Forwarded-Proto  "http"
    X-Forwarded-Host   the client's Host

Framing is redone: a Content-Length body is passed as is; a chunked body is re-chunked (trailers dropped).
`Expect: 100-continue` is answered by the gateway and not forwarded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from jishi.core.balancer import Peer
    from jishi.core.routing import RouteEntry
    from jishi.gateway.upstream import UpstreamConnection

__all__ = ["IDEMPOTENT", "REPLAY_LIMIT", "Exchange", "RequestHeader"]

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
REPLAY_LIMIT = 64 * 1024  # request bodies up to this size are kept for a retry on another instance


class RequestHeader:
    """What the gateway does with a request header, by lower-cased name (absent: forward it)."""

    DROP, CONNECTION, TRANSFER_ENCODING, HOST, FORWARDED_FOR, EXPECT, CONTENT_LENGTH = range(7)

    BY_NAME: ClassVar[dict[bytes, int]] = {
        b"connection": CONNECTION,
        b"keep-alive": DROP,
        b"proxy-connection": DROP,
        b"te": DROP,
        b"trailer": DROP,
        b"upgrade": DROP,
        b"transfer-encoding": TRANSFER_ENCODING,
        b"host": HOST,
        b"x-forwarded-for": FORWARDED_FOR,
        b"x-real-ip": DROP,
        b"x-forwarded-proto": DROP,
        b"x-forwarded-host": DROP,
        b"expect": EXPECT,
        b"content-length": CONTENT_LENGTH,
    }


class Exchange:
    """The state of one request from its head to the end of its response.

    Most fields start as class-level defaults, so creating one per request costs three assignments.
    """

    method = b""
    host: bytes | None = None
    xff: bytes | None = None
    conn_tokens: list[bytes] | None = None
    chunked_req = False
    expect_continue = False
    content_length = -1
    keep_alive = True
    http11 = True
    idempotent = True
    head_base = b""  # request head without a Host fallback and the final CRLF
    body_size = 0
    replayable = True
    req_done = False
    route: RouteEntry | None = None
    path = b""
    peer: Peer | None = None
    tried: list[Peer] | None = None
    tries = 0
    stale_retry = False
    last_timeout = False
    error = ""
    conn: UpstreamConnection | None = None
    resp_started = False
    resp_chunked = False
    resp_close = False
    status = 0
    bytes_out = 0
    finished = False

    def __init__(self, t0: float, url: bytes) -> None:
        self.t0 = t0
        self.url = url
        self.lines: list[bytes] = []
        self.body: list[bytes] = []  # request body as framed for the instance, kept while unsent or replayable

    def drop_connection_tokens(self) -> None:
        """Remove headers the client named in its Connection header (they are hop-by-hop too)."""
        tokens = self.conn_tokens
        if not tokens:
            return
        prefixes = tuple(t + b":" for t in tokens)
        self.lines = [line for line in self.lines if not line.lower().startswith(prefixes)]
