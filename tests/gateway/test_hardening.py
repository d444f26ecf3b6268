"""Raw-socket requests the gateway must refuse (smuggling, oversize, slow heads) and 100-continue; after each
refusal the gateway still serves the next request on a new connection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from gateway_harness import GatewayUnderTest, simple_route, start_backend

from jishi.gateway.proxy import Proxy
from jishi.testing import ProcessGroup

MAX_HEAD = 4096
MAX_BODY = 10_000
HEADER_TIMEOUT = 0.5


@pytest.fixture
async def strict(procs: ProcessGroup) -> AsyncIterator[GatewayUnderTest]:
    """A proxy with small limits (4 KiB heads, 10 kB bodies, 0.5 s header timeout) over one backend."""
    proxy = Proxy(max_head_size=MAX_HEAD, max_body_size=MAX_BODY, header_timeout=HEADER_TIMEOUT)
    port = await proxy.start("127.0.0.1", 0)
    gw = GatewayUnderTest(proxy, port)
    backend = start_backend(procs, "b0")
    gw.set([simple_route()], [backend.instance()])
    try:
        yield gw
    finally:
        await proxy.stop(grace=1.0)


async def send_raw(port: int, *pieces: bytes, pause: float = 0.0) -> bytes:
    """Send `pieces` (`pause` seconds apart) on a new connection and read until the gateway closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for piece in pieces:
            if writer.is_closing() or reader.at_eof():
                break  # answered already
            try:
                writer.write(piece)
                await writer.drain()
            except ConnectionError:
                break
            if pause:
                await asyncio.sleep(pause)
        return await asyncio.wait_for(reader.read(-1), 5.0)
    finally:
        writer.close()


def status_and_body(response: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body.startswith(b"{") else {}


async def still_serves(port: int) -> None:
    response = await send_raw(port, b"GET /whoami HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert status_and_body(response)[0] == 200, response[:200]


SMUGGLING = {
    "content-length and chunked": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "chunked and content-length": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    "duplicate content-length": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        400,
    ),
    "content-length list": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400),
    "negative content-length": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\nhello", 400),
    "signed content-length": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400),
    "bad chunk size": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    "chunk size overflow": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nx\r\n",
        400,
    ),
    "chunk data longer than its size": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n",
        400,
    ),
    "obs-fold": (b"GET /whoami HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400),
    "bare LF line ends": (b"GET /whoami HTTP/1.1\nHost: a\n\n", 400),
    "bare LF inside the head": (b"GET /whoami HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400),
    "bare CR inside the head": (b"GET /whoami HTTP/1.1\r\nHost: a\rX-A: b\r\n\r\n", 400),
    "space before the colon": (b"GET /whoami HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400),
    "NUL in a header value": (b"GET /whoami HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", 400),
    "two Host headers": (b"GET /whoami HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "chunked in HTTP/1.0": (b"POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "chunked twice": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "chunked not last": (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    "unknown coding before chunked": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
}


@pytest.mark.parametrize("case", sorted(SMUGGLING))
async def test_ambiguous_framing_is_refused_and_the_gateway_keeps_serving(strict: GatewayUnderTest, case: str) -> None:
    """Each smuggling-prone request gets its 4xx/501 JSON error and a closed connection; the next one is served."""
    request, expected = SMUGGLING[case]
    status, body = status_and_body(await send_raw(strict.port, request))
    assert status == expected
    assert isinstance(body.get("error"), dict) and body["error"]["message"]  # type: ignore[index]
    await still_serves(strict.port)


async def test_head_over_the_limit_in_one_read_is_431(strict: GatewayUnderTest) -> None:
    """A head larger than max_head_size sent at once is refused with 431 before it reaches an instance."""
    big = b"X-Big: " + b"a" * MAX_HEAD + b"\r\n"
    status, body = status_and_body(await send_raw(strict.port, b"GET /whoami HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n"))
    assert (status, body["error"]["code"]) == (431, "head_too_large")  # type: ignore[index]
    await still_serves(strict.port)


async def test_head_over_the_limit_in_many_reads_is_431(strict: GatewayUnderTest) -> None:
    """Many small headers trickled in separate reads are counted together and refused once over the limit."""
    lines = [b"X-H%d: %s\r\n" % (i, b"v" * 60) for i in range(100)]  # ~7 kB in all
    response = await send_raw(strict.port, b"GET /whoami HTTP/1.1\r\nHost: a\r\n", *lines, pause=0.002)
    assert status_and_body(response)[0] == 431
    await still_serves(strict.port)


async def test_one_endless_header_value_is_431(strict: GatewayUnderTest) -> None:
    """A single header value that never ends is refused while it is still arriving (the buffer stays bounded)."""
    pieces = [b"a" * 1000 for _ in range(12)]
    response = await send_raw(strict.port, b"GET /whoami HTTP/1.1\r\nHost: a\r\nX-Long: ", *pieces, pause=0.002)
    assert status_and_body(response)[0] == 431
    await still_serves(strict.port)


async def test_head_just_under_the_limit_is_served(strict: GatewayUnderTest) -> None:
    """A head a little under the limit, split over reads, passes (the limit is not an overestimate)."""
    head = b"GET /whoami HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Pad: " + b"p" * (MAX_HEAD - 200) + b"\r\n\r\n"
    response = await send_raw(strict.port, head[:100], head[100:2000], head[2000:], pause=0.01)
    assert status_and_body(response)[0] == 200


async def test_content_length_over_the_limit_is_413_before_the_body(strict: GatewayUnderTest) -> None:
    """A declared Content-Length over max_body_size is answered 413 at once, without waiting for the body."""
    head = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1)
    status, body = status_and_body(await send_raw(strict.port, head))
    assert (status, body["error"]["code"]) == (413, "body_too_large")  # type: ignore[index]
    await still_serves(strict.port)


async def test_chunked_body_over_the_limit_is_413_while_streaming(strict: GatewayUnderTest) -> None:
    """A chunked body is counted as it streams and refused with 413 once it passes max_body_size."""
    chunk = b"%x\r\n%s\r\n" % (3000, b"c" * 3000)
    head = b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    response = await send_raw(strict.port, head, *[chunk] * 5, pause=0.01)
    assert status_and_body(response)[0] == 413
    await still_serves(strict.port)


async def test_body_at_the_limit_is_forwarded(strict: GatewayUnderTest) -> None:
    """A chunked body of exactly max_body_size bytes reaches the instance whole."""
    chunk = b"%x\r\n%s\r\n" % (MAX_BODY // 2, b"d" * (MAX_BODY // 2))
    head = b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    response = await send_raw(strict.port, head, chunk, chunk, b"0\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 ") and b"X-Echo-Size: %d" % MAX_BODY in response


async def test_slow_head_is_answered_408_and_closed(strict: GatewayUnderTest) -> None:
    """A client that does not finish its head within header_timeout gets 408 and the connection is closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.port)
    try:
        writer.write(b"GET /whoami HTTP/1.1\r\nHost: a\r\n")
        t0 = asyncio.get_running_loop().time()
        response = await asyncio.wait_for(reader.read(-1), 5.0)
        waited = asyncio.get_running_loop().time() - t0
    finally:
        writer.close()
    status, body = status_and_body(response)
    assert (status, body["error"]["code"]) == (408, "request_timeout")  # type: ignore[index]
    assert HEADER_TIMEOUT * 0.9 <= waited <= HEADER_TIMEOUT + 1.5
    await still_serves(strict.port)


async def test_silent_new_connection_is_closed_after_the_header_timeout(strict: GatewayUnderTest) -> None:
    """A connection that sends nothing at all is answered 408 once the header timeout has passed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.port)
    try:
        response = await asyncio.wait_for(reader.read(-1), 5.0)
    finally:
        writer.close()
    assert status_and_body(response)[0] == 408


async def test_idle_keep_alive_connection_is_not_cut_by_the_header_timeout(strict: GatewayUnderTest) -> None:
    """Between requests the keep-alive timeout applies, not the header timeout."""
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.port)
    try:
        for _ in range(2):
            writer.write(b"GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            assert head.startswith(b"HTTP/1.1 200 ")
            await asyncio.sleep(HEADER_TIMEOUT * 3)
    finally:
        writer.close()


async def test_expect_100_continue_is_answered_by_the_gateway(strict: GatewayUnderTest) -> None:
    """With Expect: 100-continue the gateway sends 100 once the request is routed, then relays the response."""
    reader, writer = await asyncio.open_connection("127.0.0.1", strict.port)
    try:
        writer.write(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"hello")
        response = await asyncio.wait_for(reader.read(-1), 5.0)
    finally:
        writer.close()
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"hello")
    assert b'"expect"' not in response  # the instance never saw the Expect header


async def test_expect_100_continue_over_the_body_limit_gets_413_without_100(strict: GatewayUnderTest) -> None:
    """A too-large body announced with Expect: 100-continue is refused before the client sends it."""
    head = b"POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY * 2)
    response = await send_raw(strict.port, head)
    assert response.startswith(b"HTTP/1.1 413 ")
    await still_serves(strict.port)
