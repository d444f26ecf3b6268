"""Which headers the gateway forwards, and the bytes of the heads it sends on.

Request headers forwarded to an instance: all of the client's, in order and as sent, except hop-by-hop ones
(Connection, Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade, any header named in Connection but Host,
Content-Length and Transfer-Encoding, which the gateway manages) and the ones the gateway sets itself:

    Host               kept as the client sent it (added as the instance address if the client sent none)
    X-Forwarded-For    the client's value with the client address appended
    X-Real-IP          the client address
    X-Forwarded-Proto  "http", or "https" when the client connected over TLS
    X-Forwarded-Host   the client's Host

Framing is redone: a Content-Length body is passed as is; a chunked body is re-chunked (trailers dropped).
`Expect: 100-continue` is answered by the gateway (a `100 Continue` once the request is routed and has a
healthy instance, so a refusal comes before the client sends its body; never to an HTTP/1.0 client) and not
forwarded. `Upgrade` is forwarded, with `Connection: Upgrade`, only when the client's Connection header lists
`upgrade` and the request is HTTP/1.1 (`jishi.gateway.tunnel`).

Response headers go to the client in the instance's order, except the hop-by-hop ones (the same list, any
header named in the response's Connection included; `Upgrade` is relayed on a 101 only) and Transfer-Encoding:
the gateway frames the body itself. It undoes only `chunked`: a response with any other transfer coding, or
chunked twice, is not relayed (502, as for any response that is not valid HTTP).

Header names are classified through caches keyed by the name as sent (`"Host"`, `"host"`, ...), so the common
case per header is one dict lookup, no `lower()` and no formatting: a forwarded header becomes the four pieces
name, ": ", value, CRLF of a list that is joined once. (Measured against taking the header block from the raw
bytes instead of per-header callbacks: that only wins when the same block comes again and again; with heads
that differ, as real ones do in Date, lengths and ids, the Python needed to find the names costs more than
llhttp's callbacks. `bench/gateway_micro.py --vary` shows it.)
"""

from __future__ import annotations

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
    "LENGTH",
    "REQUEST_ACTIONS",
    "RESPONSE_ACTIONS",
    "TE",
    "TRANSFER_ENCODING",
    "UPGRADE",
    "connection_tokens",
    "drop_named",
    "origin_form",
    "request_action",
    "request_head",
    "response_action",
]

# What the gateway does with a request header.
FORWARD, DROP, CONNECTION, TRANSFER_ENCODING, HOST, FORWARDED_FOR, EXPECT, CONTENT_LENGTH = range(8)
UPGRADE = 10  # kept aside: forwarded (request) or relayed (101 response) only when protocols are switched

_BY_LOWER_NAME: dict[bytes, int] = {
    b"connection": CONNECTION,
    b"keep-alive": DROP,
    b"proxy-connection": DROP,
    b"te": DROP,
    b"trailer": DROP,
    b"upgrade": UPGRADE,
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

# Connection options that name no header to drop, and headers the gateway frames or routes by itself: a client
# naming Host, Content-Length or Transfer-Encoding in Connection must not make the instance get a request without
# them (a body without its length would be read as a second request the gateway never routed).
_CONNECTION_KEEP = frozenset({b"close", b"keep-alive", b"upgrade", b"host", b"content-length", b"transfer-encoding"})


def request_action(name: bytes) -> int:
    """What to do with request header `name` (the slow path behind `REQUEST_ACTIONS.get(name)`)."""
    action = _BY_LOWER_NAME.get(name.lower(), FORWARD)
    if len(REQUEST_ACTIONS) < _ACTIONS_MAX:
        REQUEST_ACTIONS[name] = action
    return action


def connection_tokens(value: bytes) -> list[bytes]:
    """Header names a Connection header value lists to drop (not close/keep-alive/upgrade nor the headers the
    gateway manages: Host, Content-Length, Transfer-Encoding), lower-cased."""
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


# What the gateway does with a response header (besides FORWARD, DROP, CONNECTION and UPGRADE).
LENGTH, TE = 8, 9
_RESPONSE_BY_LOWER_NAME: dict[bytes, int] = {
    b"connection": CONNECTION,
    b"keep-alive": DROP,
    b"proxy-connection": DROP,
    b"te": DROP,
    b"trailer": DROP,
    b"upgrade": UPGRADE,
    b"transfer-encoding": TE,
    b"content-length": LENGTH,
}
RESPONSE_ACTIONS: dict[bytes, int] = {}  # header name as sent → action; filled by `response_action`, bounded


def response_action(name: bytes) -> int:
    """What to do with response header `name` (the slow path behind `RESPONSE_ACTIONS.get(name)`)."""
    action = _RESPONSE_BY_LOWER_NAME.get(name.lower(), FORWARD)
    if len(RESPONSE_ACTIONS) < _ACTIONS_MAX:
        RESPONSE_ACTIONS[name] = action
    return action
