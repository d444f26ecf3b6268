"""One request/response exchange through the gateway: its state from the request head to the response's end.

Which headers are forwarded, and how, is `jishi.gateway.headers`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jishi.core.balancer import Peer
    from jishi.core.routing import RouteEntry
    from jishi.gateway.hedging import Hedging
    from jishi.gateway.policy import RoutePolicy
    from jishi.gateway.policy_rewrite import ResponseEdits
    from jishi.gateway.upstream import UpstreamConnection

__all__ = ["IDEMPOTENT", "REPLAY_LIMIT", "Exchange", "TrailerSink"]

IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS", b"PUT", b"DELETE", b"TRACE"})
REPLAY_LIMIT = 64 * 1024  # request bodies up to this size are kept for a retry on another instance


class Exchange:
    """The state of one request from its head to the end of its response.

    Slotted: an exchange is made for every request and its ~50 fields are read and written all along the hot
    path. With an instance dict, CPython shares one key table among a class's instances only up to 30 keys;
    a request carrying X-Forwarded-For and a Connection header (any gateway behind a load balancer) went past
    that, and every such exchange got a dict of its own, resized as it grew (`bench/gateway_micro.py --kind
    proxied`). Slots cost the same for every request, whatever it carries.
    """

    __slots__ = (
        "body",
        "body_in",
        "body_size",
        "bytes_out",
        "chunked_raw",
        "chunked_req",
        "chunks",
        "conn",
        "conn_header",
        "conn_tokens",
        "content_length",
        "deadline",
        "error",
        "expect_continue",
        "failed_status",
        "finished",
        "head",
        "head_base",
        "head_raw",
        "hedge",
        "held",
        "host",
        "http11",
        "inflight",
        "keep_alive",
        "last_timeout",
        "lines",
        "method",
        "path",
        "peer",
        "permit_at",
        "policy",
        "replayable",
        "req_done",
        "resp_chunked",
        "resp_close",
        "resp_started",
        "response_edits",
        "retry_held",
        "route",
        "stale_retry",
        "status",
        "t0",
        "ticket",
        "tracked",
        "tried",
        "tries",
        "try_start",
        "upgrade",
        "url",
        "xff",
    )

    def __init__(self, t0: float, url: bytes) -> None:
        self.t0 = t0
        self.url = url
        self.lines: list[bytes] = []  # forwarded request headers: name, b": ", value, CRLF for each
        self.body: list[bytes] = []  # request body as framed for the instance, kept while unsent or replayable
        self.method = b""
        self.host: bytes | None = None
        self.xff: bytes | None = None
        self.conn_header = False  # the client sent a Connection header
        self.conn_tokens: list[bytes] | None = None
        self.chunked_req = False
        self.expect_continue = False
        self.content_length = -1
        self.head_base = -1  # when the head spans reads: its size known at the first read (-1: it did not span yet)
        self.head_raw = 0  # bytes read for the head after its first read
        self.upgrade: bytes | None = None  # the Upgrade header's value, when the request asks to switch protocols
        self.body_in = 0  # chunked request body bytes received (without framing), checked against the size limit
        self.chunked_raw = 0  # bytes read while a chunked request body was arriving (the read with its head aside)
        self.chunks = 0  # pieces of chunked body data parsed (each may carry a chunk size line's framing)
        self.keep_alive = True
        self.http11 = True
        self.head = b""  # the request head for the instance; ends with CRLF CRLF unless a Host line is added per peer
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
        self.policy: RoutePolicy | None = None  # the route policy that admitted it; told when it ends (`done`)
        # Per-try accounting of routes with a peer group, retry budget or total timeout (`jishi.gateway.balancing`).
        self.deadline = 0.0  # loop time the route's total timeout runs out (0: none)
        self.tracked = False  # the current try is counted (in flight on its peer, in the retry budget)
        self.try_start = 0.0  # loop time the current try started
        self.retry_held = False  # holds a retry slot of the route's budget until the try it was taken for ends
        self.hedge: Hedging | None = None  # its hedging, on a route with a `hedge` section (`jishi.gateway.hedging`)
        # What the route's policy chain holds for it (`jishi.gateway.policy`): bits of held resources, the
        # adaptive limiter's in-flight count at admission, a bulkhead ticket while queued, when the breaker's
        # permit was taken, the status that decides the breaker's outcome when a fallback replaced an error, and
        # the route's response header edits.
        self.held = 0
        self.inflight = 0
        self.ticket = 0
        self.permit_at = 0.0
        self.failed_status = 0
        self.response_edits: ResponseEdits | None = None

    @property
    def idempotent(self) -> bool:
        """GET, HEAD, OPTIONS, PUT, DELETE, TRACE: may be sent again after a failure."""
        return self.method in IDEMPOTENT


class TrailerSink(Exchange):
    """Where header callbacks go after a chunked request's head: trailer fields are read and dropped, so they can
    neither add headers to a request that waits its turn nor change its Host or X-Forwarded-For."""

    def __init__(self) -> None:
        # Every field readable at its default (trailer callbacks read a few: host, xff, ...), none writable after.
        defaults = Exchange(0.0, b"")
        for name in Exchange.__slots__:
            object.__setattr__(self, name, getattr(defaults, name))

    def __setattr__(self, name: str, value: object) -> None:
        pass  # nothing a trailer says is kept

    @property
    def lines(self) -> list[bytes]:
        return []  # a fresh list each time: `lines += ...` grows nothing

    @lines.setter
    def lines(self, value: list[bytes]) -> None:
        pass
