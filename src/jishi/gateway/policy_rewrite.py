"""A route's `rewrite` section, compiled once: the path and request headers before the head is built, the
response headers in the head relayed to the client.

    RequestRewrite(spec).apply(ex)      ex.path (regex over the path after strip_prefix; the query is kept)
                                        and ex.lines (set / add / remove), before `dispatch.proceed` builds
                                        the head (`jishi.gateway.headers.request_head`)
    ResponseEdits(edits).apply(lines)   the response header pieces `relay.head` forwards: a new list

Header lines are the gateway's pieces — name, b": ", value, CRLF for each header. Names compare
case-insensitively. `set` replaces every line of that name with one, `add` appends one, `remove` drops all.
Headers the gateway manages itself (Host, the hop-by-hop ones, framing, X-Forwarded-*, X-Real-IP) cannot be
edited: their rules stay as they are, and such edits are logged and left out when the route is loaded.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jishi.gateway.exchange import Exchange
    from jishi.registry.policies import HeaderEdits, Rewrite

__all__ = ["MANAGED", "RequestRewrite", "ResponseEdits"]

log = logging.getLogger(__name__)

# Header names (lower-case) whose rules belong to the gateway: edits of them are refused.
MANAGED = frozenset(
    {
        b"host",
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"transfer-encoding",
        b"content-length",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-real-ip",
    }
)
_CRLF = b"\r\n"
_SEP = b": "


def _header_text(text: str, kind: str) -> bytes | None:
    """`text` as a header `kind` ("name" or "value") in bytes, or None (logged) when it cannot be one."""
    try:
        raw = text.encode("latin-1")
    except UnicodeEncodeError:
        log.error("route rewrite: header %s %r is not latin-1 text; the edit is left out", kind, text)
        return None
    bad = b"\r" in raw or b"\n" in raw or (kind == "name" and (not raw or b":" in raw or b" " in raw))
    if bad:
        log.error("route rewrite: %r is not a valid header %s; the edit is left out", text, kind)
        return None
    return raw


class _Edits:
    """Compiled set/add/remove of one direction."""

    __slots__ = ("drop", "extra")

    def __init__(self, edits: HeaderEdits, route: str) -> None:
        drop: set[bytes] = set()
        extra: list[bytes] = []
        for name, value, replace in [(n, v, True) for n, v in edits.set.items()] + [
            (n, v, False) for n, v in edits.add.items()
        ]:
            raw_name, raw_value = _header_text(name, "name"), _header_text(value, "value")
            if raw_name is None or raw_value is None:
                continue
            if raw_name.lower() in MANAGED:
                log.error("route %s: rewrite cannot change %s (the gateway manages it); left out", route, name)
                continue
            if replace:
                drop.add(raw_name.lower())
            extra += (raw_name, _SEP, raw_value, _CRLF)
        for name in edits.remove:
            raw = _header_text(name, "name")
            if raw is None:
                continue
            if raw.lower() in MANAGED:
                log.error("route %s: rewrite cannot remove %s (the gateway manages it); left out", route, name)
                continue
            drop.add(raw.lower())
        self.drop = frozenset(drop)
        self.extra = extra

    def apply(self, lines: list[bytes]) -> list[bytes]:
        drop = self.drop
        if drop:
            kept: list[bytes] = []
            for i in range(0, len(lines), 4):
                if lines[i].lower() not in drop:
                    kept += lines[i : i + 4]
            lines = kept
        else:
            lines = list(lines)
        lines += self.extra
        return lines


class ResponseEdits(_Edits):
    """The response header edits of a route (`relay.head` calls `apply` on the pieces it forwards)."""


class RequestRewrite:
    """The request side of a route's rewrite: path and headers."""

    __slots__ = ("edits", "pattern", "replacement")

    def __init__(self, spec: Rewrite, route: str) -> None:
        self.pattern: re.Pattern[bytes] | None = None
        self.replacement: bytes | None = None
        if spec.path is not None:
            self.replacement = spec.path.encode()
            if spec.path_regex is not None:
                self.pattern = re.compile(spec.path_regex.encode())
        self.edits = _Edits(spec.request_headers, route) if spec.request_headers is not None else None

    def apply(self, ex: Exchange) -> None:
        """Rewrite `ex.path` and `ex.lines` in place."""
        replacement = self.replacement
        if replacement is not None:
            path = ex.path
            q = path.find(b"?")
            query = b""
            if q >= 0:
                path, query = path[:q], path[q:]
            path = replacement if self.pattern is None else self.pattern.sub(replacement, path, count=1)
            if not path.startswith(b"/"):
                path = b"/" + path
            ex.path = path + query
        if self.edits is not None:
            ex.lines = self.edits.apply(ex.lines)
