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
    """The state of one request from its head to the end of its response."""

    __slots__ = (
        "body",
        "body_size",
        "bytes_out",
        "chunked_req",
        "conn",
        "conn_tokens",
        "content_length",
        "error",
        "expect_continue",
        "finished",
        "head_base",
        "host",
        "http11",
        "idempotent",
        "keep_alive",
        "last_timeout",
        "lines",
        "method",
        "path",
        "peer",
        "replayable",
        "req_done",
        "resp_chunked",
        "resp_close",
        "resp_started",
        "route",
        "stale_retry",
        "status",
        "t0",
        "tried",
        "tries",
        "url",
        "xff",
    )

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.method = b""
        self.url = b""
        self.host: bytes | None = None
        self.lines: list[bytes] = []
        self.xff: bytes | None = None
        self.conn_tokens: list[bytes] | None = None
        self.chunked_req = False
        self.expect_continue = False
        self.content_length = -1
        self.keep_alive = True
        self.http11 = True
        self.idempotent = True
        self.head_base = b""  # request head without Host fallback and the final CRLF
        self.body: list[bytes] = []  # request body as framed for the instance, kept while not yet sent or replayable
        self.body_size = 0
        self.replayable = True
        self.req_done = False
        self.route: RouteEntry | None = None
        self.path = b""
        self.peer: Peer | None = None
        self.tried: list[Peer] | None = None
        self.tries = 0
        self.stale_retry = False
        self.last_timeout = False
        self.error = ""
        self.conn: UpstreamConnection | None = None
        self.resp_started = False
        self.resp_chunked = False
        self.resp_close = False
        self.status = 0
        self.bytes_out = 0
        self.finished = False

    def drop_connection_tokens(self) -> None:
        """Remove headers the client named in its Connection header (they are hop-by-hop too)."""
        tokens = self.conn_tokens
        if not tokens:
            return
        prefixes = tuple(t + b":" for t in tokens)
        self.lines = [line for line in self.lines if not line.lower().startswith(prefixes)]
