"""Responses the gateway writes itself: JSON errors with a stable code and a human message."""

from __future__ import annotations

import json
from http import HTTPStatus

__all__ = ["STATUS_LINES", "error_response", "status_line"]

STATUS_LINES: dict[int, bytes] = {}  # status → status line, filled as statuses are seen (only valid ones)


def status_line(status: int) -> bytes:
    """b"HTTP/1.1 200 OK\r\n" with the standard reason phrase (the instance's own phrase is not relayed)."""
    line = STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, _reason(status))
        if 100 <= status <= 999:
            STATUS_LINES[status] = line
    return line


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"


def error_response(status: int, code: str, message: str, *, close: bool, head_only: bool = False) -> bytes:
    """A complete response: `{"error": {"code": ..., "message": ...}}` with the right head."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode() + b"\n"
    head = (
        status_line(status)
        + b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        + (b"Connection: close\r\n" if close else b"")
        + b"Server: jishi\r\n\r\n"
    )
    return head if head_only else head + body
