"""`gateway.limits` from a jishi.yaml, through the gateway's command line (as `jishi up` passes it), take
effect in every worker of a real gateway process; bad option values stop it with a message naming them."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_hardening import send_raw, status_and_body

from jishi.config import parse_config
from jishi.gateway.main import limits_argv
from jishi.testing import ProcessGroup, free_port, wait_for_port
from jishi.testing.processes import wait_until

WORKERS = 2
CONFIG = f"""
gateway:
  workers: {WORKERS}
  limits:
    max_head_size: 2KiB
    max_body_size: 1KiB
    header_timeout: 500ms
    body_timeout: 300ms
    keepalive_timeout: 0.5
    send_timeout: 300ms
    request_timeout: 200ms
services: {{}}
"""


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A two-worker gateway process (no control plane: no routes) started with the limits of CONFIG."""
    tmp = tmp_path_factory.mktemp("limits")
    config = parse_config(CONFIG, "jishi.yaml", tmp)
    port = free_port()
    argv = [sys.executable, "-m", "jishi.gateway", "--control-plane", f"http://127.0.0.1:{free_port()}"]
    argv += ["--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp / "gw"), "--workers", str(WORKERS)]
    argv += limits_argv(config.gateway.limits)
    with ProcessGroup(tmp / "logs") as group:
        proc = group.start("gateway", argv)
        wait_for_port(port, timeout=20)
        # every worker listens before the tests run, so the kernel spreads their connections over all of them
        wait_until(lambda: proc.log().count("jishi gateway listening") >= WORKERS, timeout=20)
        yield port


def each_connection(port: int, *pieces: bytes, times: int = 8) -> list[bytes]:
    """What `times` connections sending `pieces` each get (spread over the workers by SO_REUSEPORT)."""

    async def go() -> list[bytes]:
        return list(await asyncio.gather(*(send_raw(port, *pieces) for _ in range(times))))

    return asyncio.run(go())


def test_configured_head_limit_gives_431_in_every_worker(port: int) -> None:
    """With max_head_size 2KiB a 3 KiB head (fine under the 32 KiB default) is 431 on every connection."""
    head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 3000 + b"\r\n\r\n"
    for response in each_connection(port, head):
        assert status_and_body(response)[0] == 431, response[:200]


def test_configured_body_limit_gives_413_in_every_worker(port: int) -> None:
    """With max_body_size 1KiB a Content-Length of 2000 is 413 on every connection."""
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n"
    for response in each_connection(port, head):
        status, body = status_and_body(response)
        assert (status, body["error"]["code"]) == (413, "body_too_large"), response[:200]  # type: ignore[index]


def test_configured_header_timeout_gives_408(port: int) -> None:
    """With header_timeout 500ms a head left unfinished is 408 within a couple of seconds, not 10."""
    for response in each_connection(port, b"GET / HTTP/1.1\r\nHost: a\r\n", times=4):
        assert status_and_body(response)[0] == 408, response[:200]


def test_configured_keepalive_timeout_closes_idle_connections(port: int) -> None:
    """With keepalive_timeout 0.5 a kept-alive connection is closed soon after its answer, not after 75 s."""
    for response in each_connection(port, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", times=4):
        assert response.count(b"HTTP/1.1 ") == 1 and b"Connection: close" not in response, response[:200]


def test_configured_body_timeout_ends_a_stalled_body(port: int) -> None:
    """With body_timeout 300ms a request whose body stops arriving is ended in about a second, not 60."""
    head = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789"
    for response in each_connection(port, head, times=4):
        assert response.startswith(b"HTTP/1.1 "), response[:200]  # answered (no route), then closed


def test_bad_limit_option_stops_the_gateway_naming_it(tmp_path: Path) -> None:
    """`--body-timeout soon` exits 2 with the option, the problem and an example."""
    argv = [sys.executable, "-m", "jishi.gateway", "--listen", f"127.0.0.1:{free_port()}"]
    argv += ["--state-dir", str(tmp_path), "--body-timeout", "soon"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--body-timeout" in done.stderr and "must be a duration" in done.stderr
    assert "e.g. --body-timeout 10s" in done.stderr


def test_configured_request_timeout_ends_a_request_still_arriving(port: int) -> None:
    """With request_timeout 200ms (under the header timeout) a head trickling a byte every 0.1 s is answered
    408 naming the request timeout."""

    async def go() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nX-Slow: ")
            for _ in range(30):
                try:
                    return await asyncio.wait_for(reader.read(65536), 0.1)
                except TimeoutError:
                    writer.write(b"x")  # a header value that never ends, a byte every 0.1 s
            return b""
        finally:
            writer.close()

    status, body = status_and_body(asyncio.run(go()))
    assert status == 408, body
    assert "request timeout" in body["error"]["message"]  # type: ignore[index]
