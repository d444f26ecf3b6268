"""The header timeout on a TLS listener: a client that connects to the HTTPS port and never completes the TLS
handshake is cut after `header_timeout`, as on the plain listener. Certificate from the openssl CLI, real sockets
on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from jishi.gateway.proxy import Proxy
from jishi.gateway.tls import server_context

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")

HEADER_TIMEOUT = 0.5


@pytest.fixture
def cert_and_key(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed EC certificate for gateway.test."""
    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    argv = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    argv += ["-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=gateway.test"]
    subprocess.run(argv, check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.fixture
async def tls_proxy(cert_and_key: tuple[Path, Path]) -> AsyncIterator[int]:
    """An HTTPS proxy with a 0.5 s header timeout; yields its port."""
    cert, key = cert_and_key
    proxy = Proxy(header_timeout=HEADER_TIMEOUT)
    port = await proxy.start("127.0.0.1", 0, ssl=server_context(cert, key))
    try:
        yield port
    finally:
        await proxy.stop(grace=0.5)


async def test_a_silent_connection_on_the_tls_listener_is_closed_after_the_header_timeout(tls_proxy: int) -> None:
    """A TCP connection to the HTTPS port that sends nothing (not even a ClientHello) is closed once
    `header_timeout` has passed, not held for asyncio's 60 s TLS handshake timeout."""
    reader, writer = await asyncio.open_connection("127.0.0.1", tls_proxy)
    t0 = time.monotonic()
    try:
        try:
            data = await asyncio.wait_for(reader.read(1), HEADER_TIMEOUT + 3.0)
        except TimeoutError:
            data = None
        except ConnectionError:
            data = b""
    finally:
        writer.close()
    elapsed = time.monotonic() - t0
    assert data == b"", f"still open after {elapsed:.1f} s (header timeout {HEADER_TIMEOUT} s)"
    assert elapsed >= HEADER_TIMEOUT * 0.9
