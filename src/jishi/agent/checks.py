"""Health probes: one check of one instance, turned into an `Outcome` and a human message.

- `http`: GET `path` over a raw asyncio connection (no client library, no pooling: each probe is a fresh
  connection, so a hung accept loop is noticed). A status in `expect_status` passes, 429 warns (the instance is
  alive but asks for relief), anything else fails.
- `tcp`: a connection that is accepted passes.
- `none`: passes while the process runs (the supervisor only probes a running process).

A probe never raises for a failing instance: timeouts and connection errors are FAIL with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib

from jishi.core.health import Outcome
from jishi.registry.model import HealthCheckSpec

__all__ = ["http_probe", "probe", "tcp_probe"]

TOO_MANY_REQUESTS = 429


async def probe(check: HealthCheckSpec, host: str, port: int) -> tuple[Outcome, str]:
    """Run the check once against host:port."""
    if check.type == "none":
        return Outcome.PASS, "process running"
    if check.type == "tcp":
        return await tcp_probe(host, port, within=check.timeout)
    return await http_probe(host, port, check.path, within=check.timeout, expect=check.expect_status)


async def tcp_probe(host: str, port: int, *, within: float) -> tuple[Outcome, str]:
    try:
        async with asyncio.timeout(within):
            _, writer = await asyncio.open_connection(host, port)
            await _close(writer)
    except TimeoutError:
        return Outcome.FAIL, f"TCP connect to {host}:{port} timed out after {within:g} s"
    except OSError as exc:
        return Outcome.FAIL, f"TCP connect to {host}:{port} failed: {exc.strerror or exc}"
    return Outcome.PASS, f"TCP connect to {host}:{port} succeeded"


async def http_probe(
    host: str, port: int, path: str, *, within: float, expect: tuple[int, int] = (200, 399)
) -> tuple[Outcome, str]:
    url = f"http://{host}:{port}{path}"
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: jishi-agent\r\nConnection: close\r\n\r\n"
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request.encode("latin-1"))
                await writer.drain()
                status_line = await reader.readline()
            finally:
                await _close(writer)
    except TimeoutError:
        return Outcome.FAIL, f"GET {url} timed out after {within:g} s"
    except OSError as exc:
        return Outcome.FAIL, f"GET {url} failed: {exc.strerror or exc}"
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        shown = status_line[:80].decode("latin-1").strip() or "connection closed without a response"
        return Outcome.FAIL, f"GET {url}: not an HTTP response ({shown!r})"
    status = int(parts[1])
    if expect[0] <= status <= expect[1]:
        return Outcome.PASS, f"GET {url}: HTTP {status}"
    if status == TOO_MANY_REQUESTS:
        return Outcome.WARN, f"GET {url}: HTTP 429 (overloaded)"
    return Outcome.FAIL, f"GET {url}: HTTP {status}, expected {expect[0]}–{expect[1]}"


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
