"""The client's resuming watch without sockets: dropped streams resume at the right point, exactly once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jishi.api import HttpControlPlane, wire
from jishi.errors import CompactedError, ControlPlaneError, StoreError
from jishi.store import Put
from jishi.store.sqlite import SqliteStore


def _ev(key: str, rev: int) -> bytes:
    line = {"type": "put", "key": key, "value": "v", "create_revision": rev, "mod_revision": rev, "version": 1}
    return json.dumps(line).encode() + b"\n"


HEARTBEAT = b'{"heartbeat": 1}\n'
# revision 5 is one txn of three keys; revision 6 one key
LOG = [("a", 5), ("b", 5), ("c", 5), ("d", 6)]


class BrokenStream(httpx.AsyncByteStream):
    """A response body that sends `lines` and then fails like a connection cut by a killed server."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for line in self.lines:
            yield line
        raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")


class FakeServer:
    """Serves the watch log from the requested revision; each connection breaks after `cut[i]` events."""

    def __init__(self, cuts: list[int], compacted_after: int | None = None) -> None:
        self.cuts = cuts
        self.starts: list[int] = []
        self.compacted_after = compacted_after

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        start = int(request.url.params["start_revision"])
        self.starts.append(start)
        if self.compacted_after is not None and len(self.starts) > self.compacted_after:
            body = {"error": {"code": "compacted", "message": "gone", "requested": start, "compact_revision": 9}}
            return httpx.Response(410, json=body)
        lines = [_ev(k, r) for k, r in LOG if r >= start]
        cut = self.cuts[len(self.starts) - 1] if len(self.starts) <= len(self.cuts) else len(lines)
        return httpx.Response(200, stream=BrokenStream([HEARTBEAT, *lines[:cut]]))


async def _take(cp: HttpControlPlane, start: int, n: int) -> list[tuple[str, int]]:
    seen = []
    events = cp.watch("/", start)
    async for event in events:
        seen.append((event.kv.key.decode(), event.kv.mod_revision))
        if len(seen) == n:
            break
    await events.aclose()  # type: ignore[attr-defined]
    return seen


async def test_a_stream_cut_inside_a_txn_resumes_without_gaps_or_duplicates() -> None:
    """Streams cut inside revision 5 (after 2, 0, then 3 of its events) resume at 5, skipping what was delivered."""
    server = FakeServer(cuts=[2, 0, 3])
    async with HttpControlPlane("http://cp", transport=httpx.MockTransport(server)) as cp:
        seen = await _take(cp, 5, 4)
    assert seen == LOG
    assert server.starts == [5, 5, 5, 5]


async def test_a_stream_cut_between_revisions_resumes_at_the_next_one() -> None:
    """Cut after all of revision 5 was delivered: the resumed stream's repeats of 5 are dropped, 6 comes once."""
    server = FakeServer(cuts=[3])
    async with HttpControlPlane("http://cp", transport=httpx.MockTransport(server)) as cp:
        seen = await _take(cp, 5, 4)
    assert seen == LOG and server.starts == [5, 5]


async def test_a_compacted_resume_point_raises() -> None:
    """If the revision to resume from was compacted while disconnected, the watch raises CompactedError."""
    server = FakeServer(cuts=[1], compacted_after=1)
    async with HttpControlPlane("http://cp", transport=httpx.MockTransport(server)) as cp:
        events = cp.watch("/", 5)
        assert (await anext(events)).kv.key == b"a"  # type: ignore[call-overload]
        with pytest.raises(CompactedError):
            await anext(events)  # type: ignore[call-overload]


class FailingServer:
    """Answers the first `len(failures)` watch requests with a stream ending in one error line, then serves LOG."""

    def __init__(self, failures: list[bytes]) -> None:
        self.failures = failures
        self.starts: list[int] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.starts.append(int(request.url.params["start_revision"]))
        if len(self.starts) <= len(self.failures):
            return httpx.Response(200, content=HEARTBEAT + self.failures[len(self.starts) - 1])
        return httpx.Response(200, content=HEARTBEAT + b"".join(_ev(k, r) for k, r in LOG))


async def _store_errors(directory: Path) -> tuple[StoreError, StoreError]:
    """What a real store raises for a txn writing a key twice, and for a call after it was closed."""
    store = await SqliteStore.open(directory / "state.db", synchronous="NORMAL")
    with pytest.raises(StoreError) as invalid:
        await store.txn([], [Put(b"/a", b"1"), Put(b"/a", b"2")])
    await store.close()
    with pytest.raises(StoreError) as closed:
        await store.put(b"/a", b"1")
    return invalid.value, closed.value


async def test_a_permanent_store_error_ends_the_watch_without_retrying(tmp_path: Path) -> None:
    """An invalid request reported by the server is raised at once; asking again could not help."""
    invalid, _ = await _store_errors(tmp_path)
    server = FailingServer([wire.error_line(invalid)] * 50)
    async with HttpControlPlane("http://cp", transport=httpx.MockTransport(server)) as cp:
        with pytest.raises(ControlPlaneError, match="twice") as info:
            async with asyncio.timeout(5):
                await anext(cp.watch("/", 5))  # type: ignore[arg-type]
    assert info.value.code == "invalid_request" and server.starts == [5]


async def test_a_closed_store_is_retried_until_the_watch_goes_on(tmp_path: Path) -> None:
    """A closed store (the server restarting) is passing: the watch asks again and gets its events."""
    _, closed = await _store_errors(tmp_path)
    server = FailingServer([wire.error_line(closed)] * 2)
    async with HttpControlPlane("http://cp", transport=httpx.MockTransport(server)) as cp:
        seen = await _take(cp, 5, 4)
    assert seen == LOG and server.starts == [5, 5, 5]
