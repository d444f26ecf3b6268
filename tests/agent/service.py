"""A tiny HTTP service for agent tests: GET /healthz and /whoami on $PORT.

Behaviour switches (env): CRASH=1 exits with status 3 at once; IGNORE_TERM=1 ignores SIGTERM;
HEALTH_STATUS=<code> answers /healthz with that status; HEALTH_FAIL_FILE=<path> answers /healthz with 500
while that file exists; PID_DIR=<dir> makes it create <dir>/<pid> at start.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

if os.environ.get("CRASH") == "1":
    print("crashing at start as asked", flush=True)
    sys.exit(3)
if os.environ.get("PID_DIR"):
    with open(os.path.join(os.environ["PID_DIR"], str(os.getpid())), "w"):
        pass
if os.environ.get("IGNORE_TERM") == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/healthz":
            status, body = int(os.environ.get("HEALTH_STATUS", "200")), {"ok": True}
            if os.path.exists(os.environ.get("HEALTH_FAIL_FILE", "/nonexistent")):
                status = 500
        elif self.path == "/whoami":
            status = 200
            body = {
                "service": os.environ["JISHI_SERVICE"],
                "instance": os.environ["JISHI_INSTANCE"],
                "pid": os.getpid(),
            }
        else:
            status, body = 404, {"code": "not_found", "message": self.path}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


HTTPServer.allow_reuse_address = True
server = HTTPServer(("127.0.0.1", int(sys.argv[1] if len(sys.argv) > 1 else os.environ["PORT"])), Handler)
print(f"listening on {server.server_address[1]} as pid {os.getpid()}", flush=True)
server.serve_forever()
