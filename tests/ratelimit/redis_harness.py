"""A real redis-server for the tests: started on a free loopback port, stoppable and restartable, always ended."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from jishi.testing import ManagedProcess, ProcessGroup, free_port, wait_for_port

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    """One redis-server without persistence on 127.0.0.1:`port`; `stop()` and `start()` keep the port."""

    def __init__(self, procs: ProcessGroup, port: int) -> None:
        self.procs = procs
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: ManagedProcess | None = None
        self.starts = 0

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.starts += 1
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = self.procs.start(f"redis-{self.port}-{self.starts}", argv)
        try:
            wait_for_port(self.port, timeout=10)
        except TimeoutError:
            raise AssertionError(f"redis-server did not start:\n{self.proc.log()}") from None

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.stop(grace=5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # the port is closed once the process is gone
            try:
                wait_for_port(self.port, timeout=0.05)
            except TimeoutError:
                return
        raise AssertionError(f"redis-server on port {self.port} still accepts connections after stop")


@pytest.fixture
def redis_server(procs: ProcessGroup, tmp_path: Path) -> Iterator[RedisServer]:
    """A running redis-server; skipped (with the reason) when the binary is not installed."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (scripts/test installs it: apt-get install redis-server)")
    server = RedisServer(procs, free_port())
    server.start()
    yield server  # the `procs` fixture stops every process started, by PID


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client of the test server, for looking at keys."""
    client = Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        await client.aclose()
