"""`python -m jishi.server` as a real process: a watch survives kill -9 and restart; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jishi.api import HttpControlPlane
from jishi.errors import ControlPlaneUnavailable
from jishi.server.__main__ import main as server_main
from jishi.store import Event
from jishi.testing import ManagedProcess, ProcessGroup, free_port, wait_for_port


def _start(procs: ProcessGroup, name: str, port: int, data_dir: Path) -> ManagedProcess:
    proc = procs.python(name, "-m", "jishi.server", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir))
    wait_for_port(port, timeout=20)
    return proc


async def _put_all(cp: HttpControlPlane, keys: list[str]) -> None:
    for key in keys:
        for _ in range(200):  # the server may still be coming up
            try:
                await cp.kv_put(key, key)
                break
            except ControlPlaneUnavailable:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"could not write {key}")


async def _until(predicate: object, within: float = 15.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_watch_survives_kill_and_restart_of_the_server(procs: ProcessGroup, tmp_path: Path) -> None:
    """Watching across kill -9 and restart of the server on the same data-dir sees every event once, in order."""
    port, data_dir = free_port(), tmp_path / "data"
    server = _start(procs, "server-1", port, data_dir)
    cp = HttpControlPlane(f"http://127.0.0.1:{port}", timeout=2.0, watch_idle_timeout=5.0)
    seen: list[Event] = []

    async def watcher(events: AsyncIterator[Event]) -> None:
        async for event in events:
            seen.append(event)

    start = await cp.revision() + 1
    task = asyncio.create_task(watcher(cp.watch("/jishi/kv/", start)))
    try:
        before = [f"before-{i:02d}" for i in range(10)]
        after = [f"after-{i:02d}" for i in range(10)]
        await _put_all(cp, before)
        await _until(lambda: len(seen) >= len(before))
        server.signal(signal.SIGKILL)
        server.popen.wait(timeout=10)
        await asyncio.sleep(0.3)  # the watcher is now reconnecting against a closed port
        _start(procs, "server-2", port, data_dir)
        await _put_all(cp, after)
        await _until(lambda: len(seen) >= len(before) + len(after))
        await asyncio.sleep(0.3)  # a duplicate would arrive now
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await cp.aclose()
    assert [e.kv.key.decode() for e in seen] == [f"/jishi/kv/{k}" for k in before + after]
    revisions = [e.kv.mod_revision for e in seen]
    assert revisions == list(range(start, start + len(revisions)))


async def test_sigterm_stops_the_server_cleanly_with_a_watch_open(procs: ProcessGroup, tmp_path: Path) -> None:
    """SIGTERM while a client watches: the process closes the stream and the store and exits 0 within seconds."""
    port = free_port()
    server = _start(procs, "server", port, tmp_path / "data")
    async with HttpControlPlane(f"http://127.0.0.1:{port}") as cp:
        events = cp.watch("/jishi/", 0)
        pending = asyncio.create_task(anext(events))  # type: ignore[arg-type]
        await asyncio.sleep(0.5)
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.popen.wait, 10)
        elapsed = time.monotonic() - started
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
        await events.aclose()  # type: ignore[attr-defined]
    assert code == 0, server.log()
    assert elapsed < 3.0
    assert "control plane stopped" in server.log()


def test_a_bad_listen_address_exits_2_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m jishi.server --listen nope` exits 2 and says what a valid value looks like."""
    assert server_main(["--listen", "nope", "--data-dir", "unused"]) == 2
    assert "127.0.0.1:8500" in capsys.readouterr().err
