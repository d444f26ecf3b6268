"""Which headers the gateway forwards, and the bytes of the heads it sends on.

Request headers forwarded to an instance: all of the client's, in order and as sent, except hop-by-hop ones
(Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, any header named in Connection) and the ones
the gateway sets itself:

    Host               kept as the client sent it (added as the instance address if the client sent none)
    X-Forwarded-For    the client's value with the client address appended
    X-Real-IP          the client address
    X-Forwarded-Proto  "http"
    X-Forwarded-Host   the client's Host

Framing is redone: a Content-Length body is passed as is; a chunked body is re-chunked (trailers dropped).
`Expect: 100-continue` is answered by the gateway and not forwarded.

Response headers go to the client as the instance sent them (the raw header block, not re-formatted), except
the hop-by-hop ones and Transfer-Encoding: the gateway frames the body itself. llhttp has already rejected
obs-folds, bare LFs and whitespace before a colon, so the block is CRLF-separated `name: value` lines and one
case-insensitive scan tells whether anything must be dropped (usually nothing). An instance tends to send the
same block many times (until its Date or the body length changes), so the answer is kept for the last few
hundred distinct blocks.

Request header names are classified through a cache keyed by the name as sent (`"Host"`, `"host"`, ...), so
the common case is one dict lookup and no `lower()`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jishi.gateway.exchange import Exchange

__all__ = [
    "CONNECTION",
    "CONTENT_LENGTH",
    "DROP",
    "EXPECT",
    "FORWARD",
    "FORWARDED_FOR",
    "HOST",
    "REQUEST_ACTIONS",
    "TRANSFER_ENCODING",
    "connection_tokens",
    "drop_named",
    "origin_form",
    "request_action",
    "request_head",
    "response_headers",
]

# What the gateway does with a request header.
FORWARD, DROP, CONNECTION, TRANSFER_ENCODING, HOST, FORWARDED_FOR, EXPECT, CONTENT_LENGTH = range(8)

_BY_LOWER_NAME: dict[bytes, int] = {
    b"connection": CONNECTION,
    b"keep-alive": DROP,
    b"proxy-connection": DROP,
    b"te": DROP,
    b"trailer": DROP,
    b"upgrade": DROP,
    b"transfer-encoding": TRANSFER_ENCODING,
    b"host": HOST,
    b"x-forwarded-for": FORWARDED_FOR,
    b"x-real-ip": DROP,
    b"x-forwarded-proto": DROP,
    b"x-forwarded-host": DROP,
    b"expect": EXPECT,
    b"content-length": CONTENT_LENGTH,
}
# Header name as sent → action; filled by `request_action`, bounded so odd clients cannot grow it without end.
REQUEST_ACTIONS: dict[bytes, int] = {}
_ACTIONS_MAX = 4096

_CONNECTION_KEEP = frozenset({b"close", b"keep-alive", b"upgrade"})


def request_action(name: bytes) -> int:
    """What to do with request header `name` (the slow path behind `REQUEST_ACTIONS.get(name)`)."""
    action = _BY_LOWER_NAME.get(name.lower(), FORWARD)
    if len(REQUEST_ACTIONS) < _ACTIONS_MAX:
        REQUEST_ACTIONS[name] = action
    return action


def connection_tokens(value: bytes) -> list[bytes]:
    """Header names a Connection header value lists (besides close/keep-alive/upgrade), lower-cased."""
    tokens = (t.strip().lower() for t in value.split(b","))
    return [t for t in tokens if t and t not in _CONNECTION_KEEP]


def drop_named(lines: list[bytes], names: list[bytes]) -> list[bytes]:
    """`lines` (groups of name, ": ", value, CRLF) without the headers called one of `names` (lower-case)."""
    drop = set(names)
    kept: list[bytes] = []
    for i in range(0, len(lines), 4):
        if lines[i].lower() not in drop:
            kept += lines[i : i + 4]
    return kept


def origin_form(ex: Exchange) -> bytes | None:
    """Absolute-form targets (`GET http://host/path`): take the host from the URL, return the path."""
    url = ex.url
    lower = url[:8].lower()
    if not (lower.startswith(b"http://") or lower.startswith(b"https://")):
        return None
    rest = url[url.index(b"//") + 2 :]
    slash = rest.find(b"/")
    host, path = (rest, b"/") if slash < 0 else (rest[:slash], rest[slash:])
    if ex.host is None:
        ex.host = host
        ex.lines += (b"Host", b": ", host, b"\r\n")
    ex.url = path
    return path


def request_head(ex: Exchange, forwarded: bytes, client_ip: bytes) -> bytes:
    """The head for the instance; if the client sent no Host, without that line and the final CRLF (the
    instance's address goes there, per peer).

    `forwarded` is the connection's precomputed `X-Forwarded-For: <ip>\\r\\nX-Real-IP: ...` block, used as is
    when the client sent no X-Forwarded-For of its own.
    """
    parts = [ex.method, b" ", ex.path, b" HTTP/1.1\r\n", *ex.lines]
    if ex.xff is None:
        parts.append(forwarded)
    else:
        parts += (b"X-Forwarded-For: ", ex.xff, b", ", client_ip, forwarded[forwarded.index(b"\r\n") :])
    if ex.chunked_req:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    if ex.host is not None:
        parts += (b"X-Forwarded-Host: ", ex.host, b"\r\n\r\n")
    return b"".join(parts)


_RESPONSE_HOP = re.compile(rb"(?:^|\n)(?:connection|proxy-connection|keep-alive|te|trailer|upgrade|transfer-encoding):")
_RESPONSE_DROP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"upgrade", b"transfer-encoding"}
)


_SEEN_BLOCKS: dict[bytes, tuple[bytes, bool, bool]] = {}  # an instance sends the same block again and again
_SEEN_MAX = 512


def response_headers(block: bytes) -> tuple[bytes, bool, bool]:
    """A response's header block (CRLF-ended lines) → (lines to forward, has Content-Length, chunked)."""
    seen = _SEEN_BLOCKS.get(block)
    if seen is not None:
        return seen
    result = _response_headers(block)
    if len(_SEEN_BLOCKS) >= _SEEN_MAX:
        _SEEN_BLOCKS.clear()  # (blocks that differ every time, e.g. by Date or Content-Length: start over)
    _SEEN_BLOCKS[block] = result
    return result


def _response_headers(block: bytes) -> tuple[bytes, bool, bool]:
    low = block.lower()
    has_length = low.startswith(b"content-length:") or b"\ncontent-length:" in low
    if _RESPONSE_HOP.search(low) is None:
        return block, has_length, False
    kept: list[bytes] = []
    chunked = False
    for line in block.split(b"\r\n"):
        if not line:
            continue
        name = line[: line.find(b":")].lower()
        if name in _RESPONSE_DROP:
            if name == b"transfer-encoding" and b"chunked" in line.lower():
                chunked = True
            continue
        kept.append(line)
    kept.append(b"")
    return b"\r\n".join(kept) if len(kept) > 1 else b"", has_length, chunked
