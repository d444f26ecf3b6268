"""The answers a route's policy chain gives itself: refusals (429, 503) and configured fallbacks.

    refuse(client, ex, status, code, message, retry_after=None, **fields)
        {"error": {"code", "message", "retry_after"?, ...fields}} with `Retry-After: <whole seconds, rounded up>`
    fallback_bytes(spec) -> (status, head, body)      precomputed once per route (`Fallback` section)
    answer(client, ex, status, content_type, body, extra)   write a ready response and finish the exchange

A refusal's `retry_after` in the body is the limiter's exact figure in seconds (three decimals); the header
carries the whole seconds a client must wait, rounded up (never 0: a client told "0" would come back at once).
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from jishi.gateway.responses import status_line

if TYPE_CHECKING:
    from jishi.gateway.downstream import ClientConnection
    from jishi.gateway.exchange import Exchange
    from jishi.registry.policies import Fallback

__all__ = ["FALLBACK_REASONS", "answer", "fallback_bytes", "refuse", "retry_after_header"]

# The gateway's error codes → the fallback reason (`Fallback.on`) they stand for.
FALLBACK_REASONS = {
    "circuit_open": "breaker_open",
    "rate_limited": "rate_limited",
    "no_healthy_instance": "no_instance",
    "upstream_failed": "upstream_failed",
    "upstream_unavailable": "upstream_failed",
    "upstream_timeout": "timeout",
    "gateway_timeout": "timeout",
    "overloaded": "overloaded",
    "bulkhead_full": "overloaded",
}

_EPSILON = 1e-9  # float rounding forgiven before rounding up: 2.0000000001 s is still "2"


def retry_after_header(seconds: float) -> int:
    """Whole seconds to put in Retry-After: `seconds` rounded up, at least 1."""
    if math.isinf(seconds) or math.isnan(seconds):
        return 3600
    return max(1, math.ceil(seconds - _EPSILON))


def _head(status: int, content_type: bytes, length: int, extra: bytes, close: bool) -> bytes:
    return b"".join(
        (
            status_line(status),
            b"Content-Type: ",
            content_type,
            b"\r\nContent-Length: %d\r\n" % length,
            extra,
            b"Connection: close\r\n" if close else b"",
            b"Server: jishi\r\n\r\n",
        )
    )


def _closes(client: ClientConnection, ex: Exchange) -> bool:
    """Whether the connection must close after answering `ex` (as `ClientConnection.error` decides)."""
    return (
        not ex.keep_alive
        or ex.upgrade is not None  # nothing after an upgrade request's head is read: the connection ends
        or (ex.expect_continue and not ex.req_done)
        or client.broken is not None
        or client.parser is None
        or client.proxy.stopping
    )


def answer(client: ClientConnection, ex: Exchange, status: int, content_type: bytes, body: bytes, extra: bytes) -> None:
    """Answer `ex` with `status` and `body` (plus the header lines `extra`), and finish it."""
    close = _closes(client, ex)
    ex.status = status
    ex.resp_close = close
    ex.resp_started = True
    ex.bytes_out = len(body)
    head = _head(status, content_type, len(body), extra, close)
    client.out.append(head if ex.method == b"HEAD" else head + body)
    client.flush()
    client.finish(ex)


def refuse(
    client: ClientConnection,
    ex: Exchange,
    status: int,
    code: str,
    message: str,
    retry_after: float | None = None,
    **fields: Any,
) -> None:
    """Answer `ex` with a JSON error (and Retry-After when `retry_after` is given), and finish it."""
    error: dict[str, Any] = {"code": code, "message": message}
    extra = b""
    if retry_after is not None:
        error["retry_after"] = round(retry_after, 3) if math.isfinite(retry_after) else None
        extra = b"Retry-After: %d\r\n" % retry_after_header(retry_after)
    error.update(fields)
    body = json.dumps({"error": error}).encode() + b"\n"
    answer(client, ex, status, b"application/json", body, extra)


def fallback_bytes(spec: Fallback) -> tuple[int, bytes, bytes]:
    """The configured degraded answer: (status, content type, body)."""
    return spec.status, spec.content_type.encode("latin-1"), spec.body.encode()
