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

    Most fields start as class-level defaults, so creating one per request costs a few assignments. The fields
    the route policy chain writes are assigned in `__init__` all the same: CPython shares one key table among
    the instance dicts of a class only while every instance adds its attributes in the same order, and an
    exchange whose policy wrote `policy`/`held` after `route` (where others had `head`) got a dict of its own —
    about 3 µs a request (`bench/gateway_micro.py --policy breaker`). Assigned first, they are always in place.
    """

    method = b""
    host: bytes | None = None
    xff: bytes | None = None
    conn_header = False  # the client sent a Connection header
    conn_tokens: list[bytes] | None = None
    chunked_req = False
    expect_continue = False
    content_length = -1
    head_base = -1  # when the head spans reads: its size known at the first read (-1: it did not span yet)
    head_raw = 0  # bytes read for the head after its first read
    upgrade: bytes | None = None  # the Upgrade header's value, when the request asks to switch protocols
    body_in = 0  # chunked request body bytes received (without framing), checked against the size limit
    keep_alive = True
    http11 = True
    head = b""  # the request head for the instance; ends with CRLF CRLF unless a Host line is added per peer
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
    policy: RoutePolicy | None = None  # the route policy that admitted it; told when it ends (`done`)
    # Per-try accounting of routes with a peer group, retry budget or total timeout (`jishi.gateway.balancing`).
    deadline = 0.0  # loop time the route's total timeout runs out (0: none)
    tracked = False  # the current try is counted (in flight on its peer, in the retry budget)
    try_start = 0.0  # loop time the current try started
    retry_held = False  # holds a retry slot of the route's budget until the try it was taken for ends
    hedge: Hedging | None = None  # its hedging, on a route with a `hedge` section (`jishi.gateway.hedging`)
    # What the route's policy chain holds for it (`jishi.gateway.policy`): bits of held resources, the
    # adaptive limiter's in-flight count at admission, a bulkhead ticket while queued, when the breaker's
    # permit was taken, the status that decides the breaker's outcome when a fallback replaced an error, and
    # the route's response header edits.
    held = 0
    inflight = 0
    ticket = 0
    permit_at = 0.0
    failed_status = 0
    response_edits: ResponseEdits | None = None

    def __init__(self, t0: float, url: bytes) -> None:
        self.t0 = t0
        self.url = url
        self.lines: list[bytes] = []  # forwarded request headers: name, b": ", value, CRLF for each
        self.body: list[bytes] = []  # request body as framed for the instance, kept while unsent or replayable
        self.deadline = 0.0  # (set later for a route with a total timeout: in place now, so the order holds)
        self.policy = None  # (see the class doc: the policy chain's fields, in a fixed order)
        self.held = 0
        self.permit_at = 0.0
        self.inflight = 0
        self.ticket = 0
        self.response_edits = None
        self.hedge = None  # (written by `jishi.gateway.hedging.arm` after others: in place now, so the order holds)

    @property
    def idempotent(self) -> bool:
        """GET, HEAD, OPTIONS, PUT, DELETE, TRACE: may be sent again after a failure."""
        return self.method in IDEMPOTENT


class TrailerSink(Exchange):
    """Where header callbacks go after a chunked request's head: trailer fields are read and dropped, so they can
    neither add headers to a request that waits its turn nor change its Host or X-Forwarded-For."""

    def __init__(self) -> None:
        pass

    def __setattr__(self, name: str, value: object) -> None:
        pass  # nothing a trailer says is kept

    @property
    def lines(self) -> list[bytes]:
        return []  # a fresh list each time: `lines += ...` grows nothing

    @lines.setter
    def lines(self, value: list[bytes]) -> None:
        pass
