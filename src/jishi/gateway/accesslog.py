"""The access log: one JSON line per request, buffered in memory and written in batches.

`record` only appends a tuple (no formatting, no clock read, no I/O on the request path); `flush` formats the
batch with one bytes template per line and writes it. The proxy flushes every `interval` seconds and when the
buffer holds `max_buffer` entries (500: a flush holds the event loop for about half a millisecond, where 2000
lines would hold every connection's requests for 2 ms, a visible step in p99 latency). Each line:

    {"time": 1700000000.123, "client": "127.0.0.1", "method": "GET", "path": "/a?b=1", "status": 200,
     "bytes": 2, "upstream": "127.0.0.1:9000", "duration_ms": 0.412, "tries": 1}

`time` is the wall-clock time the request finished (from the loop's monotonic clock, converted at flush),
`path` the request target as the client sent it, `upstream` empty when no instance was tried. A request the
gateway cut off for a client-side timeout (`jishi.gateway.client_timeouts`) ends its line with an `outcome`:
`..., "tries": 1, "outcome": "send_timeout"}` (or `"request_timeout"`); `note` says so before it finishes, so
`record` stays as cheap for every other request.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from jishi.core.balancer import Peer
    from jishi.gateway.exchange import Exchange

__all__ = ["AccessLog"]

log = logging.getLogger(__name__)

_Entry = tuple[float, float, bytes, bytes, bytes, int, int, "Peer | None", int]  # see `AccessLog.entries`
_LINE = (
    b'{"time": %.3f, "client": %s, "method": %s, "path": %s, "status": %d, "bytes": %d, "upstream": %s, '
    b'"duration_ms": %.3f, "tries": %d}\n'
)
_PLAIN = bytes(b for b in range(0x20, 0x7F) if b not in b'"\\')  # bytes a JSON string holds unescaped


def _json_str(raw: bytes) -> bytes:
    """`raw` (latin-1) as a JSON string literal; plain ASCII is quoted without going through `json`."""
    if not raw.translate(None, _PLAIN):  # (deleting the plain bytes leaves nothing: one C call, no regex)
        return b'"' + raw + b'"'
    return json.dumps(raw.decode("latin-1")).encode()


class AccessLog:
    """Buffered JSON-lines access log written to `path` (appended)."""

    def __init__(self, path: Path, *, interval: float = 0.5, max_buffer: int = 500) -> None:
        self.path = path
        self.interval = interval
        self.max_buffer = max_buffer
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = open(path, "ab")  # noqa: SIM115 - closed by close()
        # The entries not written yet: (now, t0, client, method, url, status, bytes, peer, tries) each; a caller
        # on the hot path may append to it itself as `record` does (and flush at `max_buffer`).
        self.entries: list[_Entry] = []
        # Outcomes of exchanges about to be recorded (`note`), by (t0, url) as their entries hold them.
        self.outcomes: dict[tuple[float, bytes], bytes] = {}

    def record(self, client: bytes, ex: Exchange, now: float) -> None:
        """Note one exchange finished at loop time `now` (cheap: the line is formatted at the next flush)."""
        entries = self.entries
        entries.append((now, ex.t0, client, ex.method, ex.url, ex.status, ex.bytes_out, ex.peer, ex.tries))
        if len(entries) >= self.max_buffer:
            self.flush()

    def note(self, ex: Exchange, outcome: bytes) -> None:
        """`ex`, about to finish, ends with `outcome` (b"send_timeout"): its line gets `"outcome": ...`. For the
        rare cut-off only; a note whose exchange is not recorded by the next flush is forgotten then."""
        self.outcomes[(ex.t0, ex.url)] = outcome

    def flush(self) -> None:
        """Write every buffered entry."""
        if not self.entries or self._file is None:
            return
        entries, self.entries = self.entries, []
        wall = time.time() - time.monotonic()  # the loop's clock is monotonic: this turns it into wall time
        # Quoted forms are cached for the batch (at most `max_buffer` lines, so the cache is bounded): clients,
        # methods, paths and upstreams repeat, and quoting is the dearest part of a line after the numbers.
        quoted: dict[bytes, bytes] = {}
        upstreams: dict[Peer | None, bytes] = {None: b'""'}
        line = _LINE
        lines: list[bytes] = []
        append = lines.append
        for now, t0, client, method, url, status, size, peer, tries in entries:
            upstream = upstreams.get(peer) if tries else b'""'  # (no try: no instance, whatever `peer` says)
            if upstream is None:
                assert peer is not None
                upstream = upstreams[peer] = _json_str(b"%s:%d" % (peer.address.encode(), peer.port))
            q_client = quoted.get(client)
            if q_client is None:
                q_client = quoted[client] = _json_str(client)
            q_method = quoted.get(method)
            if q_method is None:
                q_method = quoted[method] = _json_str(method)
            q_url = quoted.get(url)
            if q_url is None:
                q_url = quoted[url] = _json_str(url)
            append(line % (now + wall, q_client, q_method, q_url, status, size, upstream, (now - t0) * 1000, tries))
        if self.outcomes:
            _add_outcomes(entries, lines, self.outcomes)
        try:
            self._file.write(b"".join(lines))
            self._file.flush()
        except OSError as exc:
            log.error("access log %s: could not write %d lines: %s", self.path, len(lines), exc)

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None


def _add_outcomes(entries: list[_Entry], lines: list[bytes], outcomes: dict[tuple[float, bytes], bytes]) -> None:
    """End the lines of the noted entries with their `"outcome"`; forget the notes."""
    for i, entry in enumerate(entries):
        outcome = outcomes.pop((entry[1], entry[4]), None)
        if outcome is not None:
            lines[i] = b'%s, "outcome": "%s"}\n' % (lines[i][:-2], outcome)
    outcomes.clear()
