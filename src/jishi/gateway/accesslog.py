"""The access log: one JSON line per request, buffered in memory and written in batches.

`record` only appends a tuple (no formatting, no I/O on the request path); `flush` formats and writes the
batch. The proxy flushes every `interval` seconds and when the buffer holds `max_buffer` entries.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from jishi.gateway.exchange import Exchange

__all__ = ["AccessLog"]

log = logging.getLogger(__name__)

_Entry = tuple[float, bytes, bytes, bytes, int, int, str, float, int]


class AccessLog:
    """Buffered JSON-lines access log written to `path` (appended)."""

    def __init__(self, path: Path, *, interval: float = 0.5, max_buffer: int = 2000) -> None:
        self.path = path
        self.interval = interval
        self.max_buffer = max_buffer
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO | None = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._buffer: list[_Entry] = []

    def record(self, client: bytes, ex: Exchange, now: float) -> None:
        """Note one finished exchange (cheap: the line is formatted at the next flush)."""
        peer = ex.peer
        upstream = f"{peer.address}:{peer.port}" if peer is not None and ex.tries else ""
        self._buffer.append(
            (time.time(), client, ex.method, ex.url, ex.status, ex.bytes_out, upstream, now - ex.t0, ex.tries)
        )
        if len(self._buffer) >= self.max_buffer:
            self.flush()

    def flush(self) -> None:
        """Write every buffered entry."""
        if not self._buffer or self._file is None:
            return
        entries, self._buffer = self._buffer, []
        lines = []
        for when, client, method, path, status, size, upstream, duration, tries in entries:
            lines.append(
                json.dumps(
                    {
                        "time": round(when, 3),
                        "client": client.decode("latin-1"),
                        "method": method.decode("latin-1"),
                        "path": path.decode("latin-1"),
                        "status": status,
                        "bytes": size,
                        "upstream": upstream,
                        "duration_ms": round(duration * 1000, 3),
                        "tries": tries,
                    }
                )
            )
        try:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()
        except OSError as exc:
            log.error("access log %s: could not write %d lines: %s", self.path, len(lines), exc)

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
