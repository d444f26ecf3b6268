"""Request and response heads through the proxy, in memory: exact bytes each side sees, split reads, HTTP/1.0."""

from __future__ import annotations

import pytest

from jishi.core.routing import RoutingTable
from jishi.gateway import Proxy
from jishi.gateway.downstream import ClientConnection
from jishi.gateway.headers import (
    CONNECTION,
    DROP,
    FORWARD,
    HOST,
    LENGTH,
    REQUEST_ACTIONS,
    TE,
    UPGRADE,
    request_action,
    response_action,
)
from jishi.gateway.upstream import UpstreamConnection
from jishi.registry.model import Health, Instance, Route, RouteBackend
from jishi.testing import MemoryTransport


class Pair:
    """A proxy with one route (prefix /api/, stripped) over one instance whose pooled connection is in memory."""

    def __init__(self) -> None:
        self.proxy = Proxy()
        route = Route(name="r", prefix="/api/", strip_prefix=True, backends=[RouteBackend(service="s")])
        inst = Instance(id="i", service="s", port=9000, health=Health.PASSING)
        self.proxy.set_table(RoutingTable.build([route], [inst]))
        self.upstream = UpstreamConnection(self.proxy.pool, ("127.0.0.1", 9000))
        self.up = MemoryTransport(("127.0.0.1", 9000))
        self.upstream.connection_made(self.up)  # type: ignore[arg-type]
        self.proxy.pool.release(self.upstream)
        self.client = ClientConnection(self.proxy)
        self.down = MemoryTransport(("10.1.2.3", 5555))
        self.client.connection_made(self.down)  # type: ignore[arg-type]

    def feed(self, data: bytes) -> None:
        """`data` from the client, and this loop turn's writes made (as the loop does after its reads)."""
        self.client.data_received(data)
        self.proxy.writes.run()

    def respond(self, *reads: bytes) -> bytes:
        for data in reads:
            self.upstream.data_received(data)
        self.proxy.writes.run()
        return self.down.take()


@pytest.fixture
async def pair() -> Pair:
    return Pair()


def test_response_header_names_are_classified_in_any_case() -> None:
    """Hop-by-hop response headers are dropped, Content-Length and Transfer-Encoding noticed, Date forwarded."""
    assert [response_action(n) for n in (b"KEEP-ALIVE", b"proxy-connection", b"Trailer")] == [DROP] * 3
    assert response_action(b"connection") == CONNECTION  # dropped, with the headers it names
    assert response_action(b"Upgrade") == UPGRADE  # relayed on a 101 only
    assert (response_action(b"content-length"), response_action(b"Transfer-Encoding")) == (LENGTH, TE)
    assert response_action(b"Date") == response_action(b"X-Content-Length") == FORWARD


def test_request_header_names_are_classified_in_any_case_and_cached() -> None:
    """'HOST' is the Host header; the answer is cached under the name as sent."""
    assert request_action(b"HoSt") == HOST
    assert REQUEST_ACTIONS[b"HoSt"] == HOST


async def test_request_head_sent_to_the_instance_is_exact(pair: Pair) -> None:
    """Headers in order as sent, hop-by-hop ones and those named in Connection dropped, forwarding headers added."""
    pair.feed(
        b"GET /api/items?x=1 HTTP/1.1\r\nHost: shop.test\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
        b"Accept: */*\r\nX-Forwarded-For: 10.0.0.9\r\nTE: trailers\r\n\r\n"
    )
    assert pair.up.take() == (
        b"GET /items?x=1 HTTP/1.1\r\nHost: shop.test\r\nAccept: */*\r\n"
        b"X-Forwarded-For: 10.0.0.9, 10.1.2.3\r\nX-Real-IP: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n"
        b"X-Forwarded-Host: shop.test\r\n\r\n"
    )


async def test_response_head_split_over_reads_after_an_interim_100(pair: Pair) -> None:
    """A 100 Continue and a final head arriving in odd pieces give the client just the final response."""
    pair.feed(b"GET /api/a HTTP/1.1\r\nHost: h\r\n\r\n")
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc"
    out = pair.respond(raw[:10], raw[10:30], raw[30:60], raw[60:])
    assert out == b"HTTP/1.1 201 Created\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc"
    assert pair.proxy.pool.idle_count() == 1


async def test_response_hop_by_hop_headers_are_dropped_and_the_body_rechunked(pair: Pair) -> None:
    """Connection/Keep-Alive/Transfer-Encoding from the instance are not relayed; the gateway frames the body."""
    pair.feed(b"GET /api/a HTTP/1.1\r\nHost: h\r\n\r\n")
    out = pair.respond(
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\n"
        b"X-B: 2\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    assert out == b"HTTP/1.1 200 OK\r\nX-B: 2\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"


async def test_http10_client_gets_close_unless_it_asked_for_keep_alive(pair: Pair) -> None:
    """HTTP/1.0 without keep-alive: Connection: close and the connection ends; with it: Connection: keep-alive."""
    pair.feed(b"GET /api/a HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n")
    out = pair.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\nx"
    assert not pair.down.closed
    pair.feed(b"GET /api/a HTTP/1.0\r\nHost: h\r\n\r\n")
    out = pair.respond(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\ny")
    assert out == b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\ny"
    assert pair.down.closed


async def test_request_without_host_gets_the_instance_address(pair: Pair) -> None:
    """An HTTP/1.0 request without Host is sent with Host set to the instance and no X-Forwarded-Host."""
    pair.feed(b"GET /api/x HTTP/1.0\r\n\r\n")
    assert pair.up.take() == (
        b"GET /x HTTP/1.1\r\nX-Forwarded-For: 10.1.2.3\r\nX-Real-IP: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n"
        b"Host: 127.0.0.1:9000\r\n\r\n"
    )


async def test_absolute_form_target_and_chunked_body_are_forwarded_in_origin_form(pair: Pair) -> None:
    """`POST http://h/api/x` goes as `/x` with Host h; a chunked body is re-chunked behind its head."""
    pair.feed(b"POST http://h.test/api/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert pair.up.take() == (
        b"POST /x HTTP/1.1\r\nHost: h.test\r\nX-Forwarded-For: 10.1.2.3\r\nX-Real-IP: 10.1.2.3\r\n"
        b"X-Forwarded-Proto: http\r\nTransfer-Encoding: chunked\r\nX-Forwarded-Host: h.test\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n"
    )


XF = b"X-Forwarded-For: 10.1.2.3\r\nX-Real-IP: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n"
FWD = XF + b"X-Forwarded-Host: h\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def dechunk(body: bytes) -> bytes:
    """The data of a chunked body, which must end with its last chunk."""
    data = b""
    while True:
        size, _, body = body.partition(b"\r\n")
        n = int(size, 16)
        if n == 0:
            assert body == b"\r\n"
            return data
        data, body = data + body[:n], body[n + 2 :]


def feed(pair: Pair, data: bytes, *, step: int = 0) -> None:
    """Deliver `data` to the client side in one read, or `step` bytes per read."""
    if not step:
        pair.feed(data)
        return
    for i in range(0, len(data), step):
        pair.feed(data[i : i + step])


@pytest.mark.parametrize("step", [0, 1, 7])
async def test_pipelined_requests_after_bodies_are_found_in_any_read_split(pair: Pair, step: int) -> None:
    """A Content-Length body, a chunked body and empty lines between requests, split anyhow: each head is exact."""
    feed(
        pair,
        b"POST /api/a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        b"POST /api/b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        b"\r\nGET /api/c HTTP/1.1\r\nHost: h\r\n\r\n",
        step=step,
    )
    assert pair.up.take() == b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n" + FWD + b"\r\nhello"
    pair.respond(OK)
    head, _, body = pair.up.take().partition(b"\r\n\r\n")
    assert head == b"POST /b HTTP/1.1\r\nHost: h\r\n" + XF + b"Transfer-Encoding: chunked\r\nX-Forwarded-Host: h"
    assert dechunk(body) == b"abc"  # (re-chunked as it arrived: one chunk per read)
    pair.respond(OK)
    assert pair.up.take() == b"GET /c HTTP/1.1\r\nHost: h\r\n" + FWD + b"\r\n"
    assert pair.respond(OK) == OK


async def test_request_text_inside_a_chunked_body_stays_body(pair: Pair) -> None:
    """Chunk data holding CRLF CRLF and a request line is forwarded as data, never taken for a request."""
    inner = b"x\r\n\r\nGET /api/evil HTTP/1.1\r\nHost: h\r\n\r\n"
    feed(pair, b"POST /api/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    feed(pair, b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner))
    head, _, body = pair.up.take().partition(b"\r\n\r\n")
    assert head.startswith(b"POST /a ") and dechunk(body) == inner
    assert pair.respond(OK) == OK
    assert pair.up.take() == b""


async def test_trailers_of_a_pipelined_chunked_request_never_become_headers(pair: Pair) -> None:
    """Trailer fields are dropped, even for a request still waiting its turn: they cannot add or change headers."""
    feed(
        pair,
        b"GET /api/a HTTP/1.1\r\nHost: h\r\n\r\n"
        b"POST /api/b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        b"0\r\nX-Injected: yes\r\nX-Forwarded-For: 6.6.6.6\r\nHost: evil\r\n\r\n",
    )
    pair.up.take()
    pair.respond(OK)
    head, _, body = pair.up.take().partition(b"\r\n\r\n")
    assert head == b"POST /b HTTP/1.1\r\nHost: h\r\n" + XF + b"Transfer-Encoding: chunked\r\nX-Forwarded-Host: h"
    assert dechunk(body) == b"abc"
