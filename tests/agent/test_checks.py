"""Health probes: HTTP status ranges, 429 as warning, refused and hung instances, TCP and none."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from jishi.agent.checks import http_probe, probe, tcp_probe
from jishi.core.health import Outcome
from jishi.registry.model import HealthCheckSpec
from jishi.testing import free_port


async def _serve(status_line: bytes | None) -> tuple[asyncio.Server, int]:
    """A server that answers every request with `status_line` (None: accepts and never answers)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = status_line
        try:
            await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:  # a TCP probe: connected and closed
            answer = b""
        if answer is None:
            await reader.read()  # until the prober gives up and closes
        elif answer:
            writer.write(answer + b"\r\nContent-Length: 0\r\n\r\n")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.fixture
async def serving() -> AsyncIterator[list[asyncio.Server]]:
    servers: list[asyncio.Server] = []
    yield servers
    for s in servers:
        s.close()
        await s.wait_closed()


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (b"HTTP/1.1 200 OK", Outcome.PASS),
        (b"HTTP/1.1 302 Found", Outcome.PASS),
        (b"HTTP/1.0 503 Unavailable", Outcome.FAIL),
        (b"HTTP/1.1 429 Too Many", Outcome.WARN),
        (b"garbage", Outcome.FAIL),
    ],
)
async def test_http_status_decides_the_outcome(serving: list[asyncio.Server], status: bytes, outcome: Outcome) -> None:
    """2xx/3xx pass, 429 warns, 5xx and non-HTTP answers fail."""
    server, port = await _serve(status)
    serving.append(server)
    result, message = await http_probe("127.0.0.1", port, "/healthz", within=1.0)
    assert result is outcome, message
    assert f"127.0.0.1:{port}/healthz" in message


async def test_custom_expected_status_range(serving: list[asyncio.Server]) -> None:
    """expect_status narrows what passes: 302 fails when only 200–299 is expected."""
    server, port = await _serve(b"HTTP/1.1 302 Found")
    serving.append(server)
    result, message = await http_probe("127.0.0.1", port, "/", within=1.0, expect=(200, 299))
    assert result is Outcome.FAIL
    assert "HTTP 302, expected 200–299" in message


async def test_refused_connection_fails_with_reason() -> None:
    """Nothing listening: FAIL, and the message says the connection failed."""
    result, message = await http_probe("127.0.0.1", free_port(), "/healthz", within=1.0)
    assert result is Outcome.FAIL
    assert "failed" in message


async def test_hung_instance_times_out(serving: list[asyncio.Server]) -> None:
    """An instance that accepts but never answers fails after the check timeout."""
    server, port = await _serve(None)
    serving.append(server)
    loop = asyncio.get_running_loop()
    started = loop.time()
    result, message = await http_probe("127.0.0.1", port, "/healthz", within=0.2)
    assert result is Outcome.FAIL
    assert "timed out after 0.2 s" in message
    assert loop.time() - started < 1.0


async def test_tcp_probe(serving: list[asyncio.Server]) -> None:
    """TCP: an accepted connection passes, a refused one fails."""
    server, port = await _serve(b"HTTP/1.1 200 OK")
    serving.append(server)
    assert (await tcp_probe("127.0.0.1", port, within=1.0))[0] is Outcome.PASS
    assert (await tcp_probe("127.0.0.1", free_port(), within=1.0))[0] is Outcome.FAIL


async def test_probe_dispatches_on_check_type() -> None:
    """type none passes without touching the network; tcp and http use the port."""
    port = free_port()
    assert (await probe(HealthCheckSpec(type="none"), "127.0.0.1", port))[0] is Outcome.PASS
    assert (await probe(HealthCheckSpec(type="tcp"), "127.0.0.1", port))[0] is Outcome.FAIL
    assert (await probe(HealthCheckSpec(type="http"), "127.0.0.1", port))[0] is Outcome.FAIL
