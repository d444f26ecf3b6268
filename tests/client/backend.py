"""A small HTTP/1.1 instance for client tests: `python backend.py PORT NAME` (stdlib asyncio only).

Behaviour is set at run time by `GET /_control?mode=ok|error|hang&fail=N&delay=S`:
    mode ok       every request answers 200 with JSON {name, port, method, path, body}
    mode error    every request answers 500
    mode hang     requests are never answered (the connection stays open)
    fail=N        the next N requests answer 500 whatever the mode (then the mode applies again)
    delay=S       every answer is sent after S seconds
`GET /_stats` answers {"requests": n, "ok": n, "failed": n, "bodies": [...]} counting every other request.
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import parse_qs, urlsplit

NAME = "backend"
PORT = 0
STATE: dict[str, object] = {"mode": "ok", "fail": 0, "delay": 0.0}
STATS: dict[str, object] = {"requests": 0, "ok": 0, "failed": 0, "bodies": []}


def _answer(status: int, payload: object) -> bytes:
    body = json.dumps(payload).encode()
    reason = {200: "OK", 500: "Internal Server Error"}.get(status, "Status")
    head = f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


async def _respond(method: str, target: str, body: bytes) -> bytes | None:
    url = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    if url.path == "/_control":
        for key, cast in (("mode", str), ("fail", int), ("delay", float)):
            if key in query:
                STATE[key] = cast(query[key])
        return _answer(200, STATE)
    if url.path == "/_stats":
        return _answer(200, STATS)
    STATS["requests"] = int(STATS["requests"]) + 1  # type: ignore[call-overload]
    if float(STATE["delay"]) > 0:  # type: ignore[arg-type]
        await asyncio.sleep(float(STATE["delay"]))  # type: ignore[arg-type]
    if int(STATE["fail"]) > 0:  # type: ignore[call-overload]
        STATE["fail"] = int(STATE["fail"]) - 1  # type: ignore[call-overload]
        STATS["failed"] = int(STATS["failed"]) + 1  # type: ignore[call-overload]
        return _answer(500, {"name": NAME, "error": "told to fail"})
    if STATE["mode"] == "hang":
        await asyncio.Event().wait()
    if STATE["mode"] == "error":
        STATS["failed"] = int(STATS["failed"]) + 1  # type: ignore[call-overload]
        return _answer(500, {"name": NAME, "error": "mode error"})
    STATS["ok"] = int(STATS["ok"]) + 1  # type: ignore[call-overload]
    text = body.decode(errors="replace")
    STATS["bodies"].append(text)  # type: ignore[attr-defined]
    return _answer(200, {"name": NAME, "port": PORT, "method": method, "path": target, "body": text})


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            answer = await _respond(method, target, body)
            if answer is not None:
                writer.write(answer)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", PORT)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    PORT, NAME = int(sys.argv[1]), sys.argv[2]
    asyncio.run(main())
