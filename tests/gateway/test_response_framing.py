"""Responses from instances that are not what they should be, through a real gateway on 127.0.0.1: hop-by-hop
headers, transfer codings, heads without end, bytes after a complete response, and the head of a 101."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging

import pytest
from gateway_harness import GatewayUnderTest
from raw_instance import exchange, head_of, raw_gateway

from jishi.gateway import relay
from jishi.gateway.upstream import MAX_RESPONSE_HEAD


def error_code(response: bytes) -> str:
    code: str = json.loads(response.partition(b"\r\n\r\n")[2])["error"]["code"]
    return code


GET_CLOSE = b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"


async def test_response_headers_named_in_connection_are_not_relayed(gateway: GatewayUnderTest) -> None:
    """A response header the instance names in its Connection header is hop-by-hop (RFC 9110 §7.6.1): dropped."""
    answer = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Internal\r\nX-Internal: secret\r\nX-Kept: 1\r\n\r\nok"
    )
    inst = await raw_gateway(gateway, answer)
    try:
        response = await exchange(gateway.port, GET_CLOSE)
    finally:
        await inst.stop()
    assert response.startswith(b"HTTP/1.1 200 "), response[:200]
    assert b"x-internal" not in head_of(response).lower(), head_of(response)
    assert b"\r\nX-Kept: 1\r\n" in head_of(response)


async def test_a_response_transfer_coding_other_than_chunked_is_refused(gateway: GatewayUnderTest) -> None:
    """`Transfer-Encoding: gzip, chunked`: the gateway undoes only chunked, so the gzip bytes would reach the client
    as if they were the body; it answers 502 with a JSON error instead."""
    payload = gzip.compress(b"hello")
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    answer = head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)
    inst = await raw_gateway(gateway, answer)
    try:
        response = await exchange(gateway.port, GET_CLOSE)
    finally:
        await inst.stop()
    assert response.startswith(b"HTTP/1.1 502 "), head_of(response)
    assert error_code(response).startswith("upstream_")


async def test_a_huge_response_head_is_refused_and_its_connection_closed(gateway: GatewayUnderTest) -> None:
    """An instance that sends an endless response head gets its request a 502 (JSON), not a gateway buffering the
    head without bound; the connection is not kept."""
    lines = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 1000) for i in range(8000))  # an 8 MB head
    inst = await raw_gateway(gateway, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n" + lines + b"\r\n")
    try:
        response = await exchange(gateway.port, GET_CLOSE)
    finally:
        await inst.stop()
    assert response.startswith(b"HTTP/1.1 502 "), head_of(response)[:200]
    assert error_code(response).startswith("upstream_")
    assert gateway.proxy.pool.idle_count() == 0


async def test_a_large_response_head_under_the_limit_is_relayed(gateway: GatewayUnderTest) -> None:
    """A response head just under the limit (many cookies, say) is relayed whole."""
    lines = b"".join(b"Set-Cookie: c%d=%s\r\n" % (i, b"v" * 1000) for i in range(MAX_RESPONSE_HEAD // 1100))
    inst = await raw_gateway(gateway, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + lines + b"\r\nok")
    try:
        response = await exchange(gateway.port, GET_CLOSE)
    finally:
        await inst.stop()
    assert response.startswith(b"HTTP/1.1 200 "), head_of(response)[:200]
    assert head_of(response).count(b"Set-Cookie: ") == MAX_RESPONSE_HEAD // 1100
    assert response.endswith(b"\r\n\r\nok")


def _body_even_for_head(head: bytes) -> bytes:
    """A sloppy instance: a chunked body whatever the method (HEAD included), in the same write as its head."""
    if head.startswith(b"HEAD "):
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\nINJECT!\r\n0\r\n\r\n"
    return b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond"


async def test_a_body_sent_for_head_never_reaches_the_next_pipelined_response(gateway: GatewayUnderTest) -> None:
    """A body the instance (wrongly) sends with its HEAD response is dropped with its connection: the client gets
    the HEAD head, then the next pipelined request's own response, never the stray body."""
    inst = await raw_gateway(gateway, _body_even_for_head)
    try:
        response = await exchange(
            gateway.port,
            b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
    finally:
        await inst.stop()
    assert b"INJECT!" not in response, response
    first, _, rest = response.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 200 ")
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"\r\n\r\nsecond"), rest


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nspoofd",
        b"HTTP/1.1 204 No Content\r\n\r\nstray",
    ],
    ids=["more-than-content-length", "body-after-204"],
)
async def test_bytes_after_a_complete_response_close_the_instance_connection(
    gateway: GatewayUnderTest, answer: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes the instance sends after a complete response (more than its Content-Length, a body after a 204) are
    not taken for the next response: the response stands, the connection is closed, not pooled, and it is logged."""
    inst = await raw_gateway(gateway, answer)
    try:
        response = await exchange(gateway.port, GET_CLOSE)
    finally:
        await inst.stop()
    assert response.startswith((b"HTTP/1.1 200 ", b"HTTP/1.1 204 ")), response
    assert b"spoofd" not in response and b"stray" not in response, response
    assert gateway.proxy.pool.idle_count() == 0
    assert any("after a complete response" in r.getMessage() for r in caplog.records)


_SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n"
)


async def test_the_101_names_the_protocol_the_instance_switched_to(gateway: GatewayUnderTest) -> None:
    """RFC 9110 §7.8: a 101's Upgrade names the protocol switched to. A client offering `websocket, h2c` whose
    instance switched to `websocket` gets `Upgrade: websocket`, not its own offer echoed back."""
    inst = await raw_gateway(gateway, _SWITCH)
    try:
        request = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket, h2c\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        writer.close()
    finally:
        await inst.stop()
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"\r\nUpgrade: websocket\r\n" in head, head
    assert head.lower().count(b"\r\nupgrade:") == 1, head


async def test_a_gateway_error_while_relaying_a_response_is_a_500_not_the_instance_fault(
    gateway: GatewayUnderTest, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in the gateway's own code while relaying a response is logged with its traceback and answered
    500 `internal_error`; it is not taken for an invalid response: the instance keeps getting requests."""
    inst = await raw_gateway(gateway, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def broken_head(*args: object) -> None:
        raise RuntimeError("a bug in relay.head")

    try:
        with monkeypatch.context() as patch:
            patch.setattr(relay, "head", broken_head)
            with caplog.at_level(logging.ERROR, logger="jishi.gateway"):
                response = await exchange(gateway.port, GET_CLOSE)
        again = await exchange(gateway.port, GET_CLOSE)
    finally:
        await inst.stop()
    assert response.startswith(b"HTTP/1.1 500 "), response
    assert error_code(response) == "internal_error"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert errors, caplog.text
    assert "a bug in relay.head" in caplog.text
    assert again.startswith(b"HTTP/1.1 200 ") and again.endswith(b"\r\n\r\nok"), again


async def test_a_gateway_error_while_ending_a_response_closes_the_client_connection(
    gateway: GatewayUnderTest, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in the gateway's own code once a response has been relayed is logged with its traceback; the
    client connection, which cannot go on in an unknown state, is closed after what was written; the instance
    connection is not kept."""
    inst = await raw_gateway(gateway, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def broken_done(*args: object) -> None:
        raise RuntimeError("a bug in relay.done")

    try:
        with monkeypatch.context() as patch:
            patch.setattr(relay, "done", broken_done)
            with caplog.at_level(logging.ERROR, logger="jishi.gateway"):
                response = await exchange(gateway.port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")  # keep-alive asked
    finally:
        await inst.stop()
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"\r\n\r\nok"), response
    assert "a bug in relay.done" in caplog.text
    assert [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info], caplog.text
    assert gateway.proxy.pool.idle_count() == 0
