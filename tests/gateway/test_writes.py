"""The loop turn's writes (`jishi.gateway.writes`): queued by connections, made together once, in order."""

from __future__ import annotations

import asyncio
import logging

import pytest

from jishi.gateway.pool import Pool
from jishi.gateway.upstream import UpstreamConnection
from jishi.gateway.writes import WriteBatch
from jishi.testing import MemoryTransport


class Conn:
    """A queued writer that records its writes (or fails)."""

    def __init__(self, log: list[str], name: str, fail: bool = False) -> None:
        self.queued = False
        self.queued_size = 0
        self.log = log
        self.name = name
        self.fail = fail

    def write_now(self) -> None:
        self.queued = False
        if self.fail:
            raise OSError("broken")
        self.log.append(self.name)


async def test_writes_wait_for_the_end_of_the_loop_turn_and_run_once() -> None:
    """Queued writers are written after the turn, in order, each once even if added twice, and not again."""
    loop = asyncio.get_running_loop()
    batch = WriteBatch(loop)
    log: list[str] = []
    a, b = Conn(log, "a"), Conn(log, "b")
    for conn in (a, b, a):  # `a` twice in the turn: written once
        batch.add(conn)
    assert log == []  # nothing written during the turn
    await asyncio.sleep(0)  # the turn ends
    assert log == ["a", "b"]
    await asyncio.sleep(0)
    assert log == ["a", "b"]  # once


async def test_one_failing_write_does_not_hold_back_the_others(caplog: pytest.LogCaptureFixture) -> None:
    """A writer that raises is logged with its error, and the writers after it are still written."""
    batch = WriteBatch(asyncio.get_running_loop())
    log: list[str] = []
    for conn in (Conn(log, "a"), Conn(log, "bad", fail=True), Conn(log, "c")):
        batch.add(conn)
    with caplog.at_level(logging.ERROR):
        batch.run()
    assert log == ["a", "c"]
    assert "writing to" in caplog.text and "broken" in caplog.text


async def test_an_instance_connection_writes_head_and_body_in_order_in_one_call() -> None:
    """A request head and two body writes queued in one turn reach the instance in order, in one call."""
    pool = Pool(asyncio.get_running_loop())
    conn = UpstreamConnection(pool, ("127.0.0.1", 9000))
    transport = MemoryTransport(("127.0.0.1", 9000))
    writes: list[int] = []
    transport.on_write = lambda: writes.append(transport.written)
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.send(None, b"POST / HTTP/1.1\r\n\r\n", False, 5.0, 0.0)  # type: ignore[arg-type]
    conn.write(b"he", b"llo")
    conn.write(b"!")
    assert transport.take() == b""
    pool.writes.run()
    assert transport.take() == b"POST / HTTP/1.1\r\n\r\nhello!"
    assert len(writes) == 1  # one writelines for the turn


async def test_an_aborted_connection_writes_nothing_it_had_queued() -> None:
    """An instance connection aborted with a request queued writes nothing when the turn ends."""
    pool = Pool(asyncio.get_running_loop())
    conn = UpstreamConnection(pool, ("127.0.0.1", 9000))
    transport = MemoryTransport(("127.0.0.1", 9000))
    conn.connection_made(transport)  # type: ignore[arg-type]
    conn.send(None, b"GET / HTTP/1.1\r\n\r\n", False, 5.0, 0.0)  # type: ignore[arg-type]
    conn.abort()
    pool.writes.run()
    assert transport.take() == b"" and transport.closed


async def test_a_held_batch_never_schedules_and_writes_when_run() -> None:
    """After `hold()` nothing is scheduled on the loop; `run` writes what was queued, each time it is called."""
    batch = WriteBatch(asyncio.get_running_loop())
    batch.hold()
    log: list[str] = []
    batch.add(Conn(log, "a"))
    await asyncio.sleep(0)
    assert log == []  # the loop turned: nothing was scheduled
    batch.run()
    batch.add(Conn(log, "b"))
    batch.run()
    assert log == ["a", "b"]
