"""Helpers for the route policy tests."""

from __future__ import annotations

import asyncio


async def read_statuses(reader: asyncio.StreamReader, n: int) -> list[int]:
    """Read `n` responses (each with a Content-Length) from `reader` and return their statuses, in order."""
    got: list[int] = []
    while len(got) < n:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        got.append(int(head.split(b" ")[1]))
    return got
