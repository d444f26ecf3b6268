"""The HTTP and storage plumbing the three shop services share (standard library only).

    app = App("catalog")
    @app.route("GET", r"/items/(\\d+)")
    def item(req: Request, item_id: str) -> Reply: ...
    app.run()            # port from --port or $PORT; serves /healthz and /whoami too

Each service is a `ThreadingHTTPServer` speaking HTTP/1.1 with keep-alive. Identity comes from the environment
the jishi agent sets (JISHI_SERVICE, JISHI_INSTANCE). On SIGTERM the server stops accepting, lets the
requests in flight finish (answering them with `Connection: close`), and exits 0.

`open_db(path, schema, seed)` gives each thread its own SQLite connection to the service's own database file,
in WAL mode so several instances of one service share it safely; the seed runs once, in a write transaction.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, Any]
Handler = Callable[..., Reply]


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise HttpError(400, "bad_json", f"the body is not JSON: {exc}") from exc


class HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class App:
    service: str
    routes: list[tuple[str, re.Pattern[str], Handler]] = field(default_factory=list)
    inflight: int = 0
    draining: bool = False
    lock: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.service = os.environ.get("JISHI_SERVICE", self.service)
        self.instance = os.environ.get("JISHI_INSTANCE", f"{self.service}-{os.getpid()}")
        self.route("GET", "/healthz")(lambda req: (200, {"status": "ok"}))
        self.route("GET", "/whoami")(lambda req: (200, self.whoami()))

    def whoami(self) -> dict[str, Any]:
        return {"service": self.service, "instance": self.instance, "pid": os.getpid()}

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            self.routes.append((method, re.compile(pattern + r"/?$"), handler))
            return handler

        return add

    def dispatch(self, req: Request) -> Reply:
        path = req.path.split("?", 1)[0]
        allowed = False
        for method, pattern, handler in self.routes:
            match = pattern.match(path)
            if match:
                if method == req.method:
                    return handler(req, *match.groups())
                allowed = True
        if allowed:
            raise HttpError(405, "method_not_allowed", f"{req.method} is not allowed on {path}")
        raise HttpError(404, "not_found", f"no such path: {path}")

    def run(self, argv: list[str] | None = None) -> None:
        parser = argparse.ArgumentParser(description=f"the shop's {self.service} service")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "0")))
        parser.add_argument("--host", default="127.0.0.1")
        args = parser.parse_args(argv)
        server = ThreadingHTTPServer((args.host, args.port), _handler_class(self))
        server.daemon_threads = True  # idle keep-alive connections do not hold up the exit
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        thread = threading.Thread(target=server.serve_forever, name="accept", daemon=True)
        thread.start()
        log(f"{self.instance} listening on http://{args.host}:{server.server_address[1]}")
        stop.wait()
        log(f"{self.instance} stopping: finishing requests in flight")
        server.shutdown()
        with self.lock:
            self.draining = True
            self.lock.wait_for(lambda: self.inflight == 0, timeout=10.0)
        server.server_close()
        log(f"{self.instance} stopped")


def _handler_class(app: App) -> type[BaseHTTPRequestHandler]:
    class ShopHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 60  # an idle keep-alive connection is closed after this many seconds

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def do_DELETE(self) -> None:
            self._serve()

        def _serve(self) -> None:
            with app.lock:
                app.inflight += 1
            try:
                try:
                    req = Request(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                    req.body = self._read_body()
                    status, payload = app.dispatch(req)
                except HttpError as exc:
                    status, payload = exc.status, {"code": exc.code, "message": exc.message}
                except Exception as exc:  # a bug in a handler: answer 500 and say what it was
                    log(f"{app.instance}: {self.command} {self.path} failed: {exc!r}")
                    status, payload = 500, {"code": "internal", "message": str(exc)}
                self._send(status, payload)
            finally:
                with app.lock:
                    app.inflight -= 1
                    app.lock.notify_all()

        def _read_body(self) -> bytes:
            if self.headers.get("transfer-encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode() + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Instance", app.instance)
            if app.draining:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the gateway keeps the access log

    return ShopHandler


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def open_db(path: str, schema: str, seed: Callable[[sqlite3.Connection], None]) -> Callable[[], sqlite3.Connection]:
    """A per-thread connection factory for the database at `path`; creates and seeds it on first use."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    local = threading.local()

    def connect() -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 10000")
            local.conn = conn
        return conn

    conn = connect()
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(schema)
    conn.execute("BEGIN IMMEDIATE")  # instances starting together: exactly one seeds
    try:
        seed(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return connect
