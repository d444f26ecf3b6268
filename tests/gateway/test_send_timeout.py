"""The send timeout: a client that stops taking its response is cut off (its instance connection dropped, no
verdict on the instance, the access log saying so); a client that reads slowly but steadily is not."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gateway_harness import GatewayUnderTest
from timeout_harness import Streamer, small_window_client, streamer, wait_for

from jishi.gateway.accesslog import AccessLog
from jishi.gateway.proxy import Proxy
from jishi.registry.model import Route

SEND_TIMEOUT = 0.3
# The housekeeping looks every 0.5 s: a stall is seen at most one look late, and cut at the look after.
LATEST = SEND_TIMEOUT + 1.0 + 1.0
BIG = 256 * 1024 * 1024  # far more than every buffer between the instance and the client holds


@pytest.fixture
async def slow_reader(tmp_path: Path) -> AsyncIterator[tuple[GatewayUnderTest, Streamer]]:
    """A proxy with a 0.3 s send timeout and an access log, in front of an in-process streaming instance on a
    route that ejects its instance after a single 5xx or gateway error and has an access log of its own."""
    async with streamer() as s:
        proxy = Proxy(send_timeout=SEND_TIMEOUT, access_log=AccessLog(tmp_path / "access.log"))
        gw = GatewayUnderTest(proxy, await proxy.start("127.0.0.1", 0))
        outlier = {"consecutive_5xx": 1, "consecutive_gateway_errors": 1, "max_ejection_percent": 100}
        log = {"path": str(tmp_path / "route.log")}
        route = Route.model_validate(
            {"name": "svc", "backends": [{"service": "svc"}], "outlier": outlier, "access_log": log}
        )
        gw.set([route], [s.instance()])
        try:
            yield gw, s
        finally:
            await proxy.stop(grace=1.0)


async def test_client_that_stops_reading_is_cut_off(slow_reader: tuple[GatewayUnderTest, Streamer]) -> None:
    """A client that reads the head of a 256 MiB response and then nothing is cut off within the send timeout
    (plus the housekeeping's period), its instance connection is dropped, and the instance is not ejected."""
    gw, instance = slow_reader
    reader, writer = await small_window_client(gw.port)
    try:
        writer.write(b"GET /stream/%d/262144/0 HTTP/1.1\r\nHost: a\r\n\r\n" % BIG)
        first = await asyncio.wait_for(reader.read(64), 5.0)
        assert first.startswith(b"HTTP/1.1 200 "), first
        waited = await wait_for(lambda: not gw.proxy.clients, LATEST)
        assert waited >= SEND_TIMEOUT
        await asyncio.wait_for(instance.dropped.wait(), 2.0)  # the instance connection was dropped, not pooled
        assert gw.proxy.pool.idle_count() == 0
        assert gw.proxy.table.routes["svc"].ejected() == []  # a slow client is no verdict on the instance
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
            while True:  # what the client's buffers held, then the reset
                if not await asyncio.wait_for(reader.read(1 << 20), 2.0):
                    raise asyncio.IncompleteReadError(b"", None)
    finally:
        writer.close()


async def test_cut_off_response_is_logged_with_its_status_and_the_outcome(
    slow_reader: tuple[GatewayUnderTest, Streamer], tmp_path: Path
) -> None:
    """The access log line of a response cut off by the send timeout has the status sent (200), the bytes
    relayed, and `"outcome": "send_timeout"`; a request answered normally has no outcome. The route's own
    access log says the same."""
    gw, _ = slow_reader
    reader, writer = await small_window_client(gw.port)
    try:
        writer.write(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n")
        assert (await asyncio.wait_for(reader.readuntil(b"ok"), 5.0)).startswith(b"HTTP/1.1 200 ")
        writer.write(b"GET /stream/%d/262144/0 HTTP/1.1\r\nHost: a\r\n\r\n" % BIG)
        await asyncio.wait_for(reader.read(64), 5.0)
        await wait_for(lambda: not gw.proxy.clients, LATEST)
    finally:
        writer.close()
    assert gw.proxy.access_log is not None
    gw.proxy.access_log.flush()
    lines = [json.loads(line) for line in (tmp_path / "access.log").read_text().splitlines()]
    assert [(line["path"], line["status"], line.get("outcome")) for line in lines] == [
        ("/ok", 200, None),
        (f"/stream/{BIG}/262144/0", 200, "send_timeout"),
    ]
    assert 0 < lines[1]["bytes"] < BIG
    route_log = gw.proxy.table.routes["svc"].policy.c.access_log
    route_log.flush()
    route_lines = [json.loads(line) for line in (tmp_path / "route.log").read_text().splitlines()]
    assert [(line["path"], line.get("outcome")) for line in route_lines] == [
        ("/ok", None),
        (f"/stream/{BIG}/262144/0", "send_timeout"),
    ]


async def test_slow_but_steady_reader_is_not_cut(slow_reader: tuple[GatewayUnderTest, Streamer]) -> None:
    """A client taking 16 KiB every 50 ms for 2 s (far past the 0.3 s send timeout) keeps its connection."""
    gw, instance = slow_reader
    reader, writer = await small_window_client(gw.port)
    try:
        writer.write(b"GET /stream/%d/262144/0 HTTP/1.1\r\nHost: a\r\n\r\n" % BIG)
        got = 0
        for _ in range(40):
            data = await asyncio.wait_for(reader.read(16384), 5.0)
            assert data, "the gateway closed the connection"
            got += len(data)
            await asyncio.sleep(0.05)
        assert gw.proxy.clients and not instance.dropped.is_set()
        assert got > 40 * 1024
    finally:
        writer.close()


async def test_no_send_timeout_while_nothing_waits_to_be_sent(slow_reader: tuple[GatewayUnderTest, Streamer]) -> None:
    """An instance slow to answer (1.2 s) is not a stalled send: the client gets its answer."""
    gw, _ = slow_reader
    reader, writer = await small_window_client(gw.port)
    try:
        writer.write(b"GET /wait/1200 HTTP/1.1\r\nHost: a\r\n\r\n")
        response = await asyncio.wait_for(reader.readuntil(b"ok"), 5.0)
    finally:
        writer.close()
    assert response.startswith(b"HTTP/1.1 200 ")
