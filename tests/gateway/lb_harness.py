"""Test instances that misbehave on purpose, for the load-balancing, health, outlier and retry tests.

`start_faulty(procs, name, mode)` runs tests/gateway/backend.py with one fault:

    ok            behaves (the plain backend)
    500           every request except /healthz gets 500 (with a JSON body naming the instance)
    sick:<file>   /healthz answers 500 while <file> exists; everything else works
"""

from __future__ import annotations

import sys
from pathlib import Path

from gateway_harness import Backend

from jishi.registry.model import Health, Instance
from jishi.testing import ProcessGroup, free_port, wait_for_port

_HERE = str(Path(__file__).parent)

_FAULTY = """
import asyncio, os, sys
import backend

MODE = sys.argv[3]
_respond = backend.Handler.respond

async def respond(self, method, path, query):
    health = path.endswith("/healthz")
    if (MODE == "500" and not health) or (MODE.startswith("sick:") and health and os.path.exists(MODE[5:])):
        body = b'{"error": "failing on purpose", "name": "' + backend.NAME.encode() + b'"}'
        head = b"HTTP/1.1 500 Internal Server Error\\r\\nContent-Length: " + str(len(body)).encode()
        self.transport.write(head + b"\\r\\n\\r\\n" + body)
        return
    if health:
        self.transport.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
        return
    await _respond(self, method, path, query)

backend.Handler.respond = respond
backend.PORT, backend.NAME = int(sys.argv[1]), sys.argv[2]
asyncio.run(backend.main())
"""


def start_faulty(procs: ProcessGroup, name: str, mode: str = "ok") -> Backend:
    port = free_port()
    proc = procs.start(name, [sys.executable, "-c", _FAULTY, str(port), name, mode], env={"PYTHONPATH": _HERE})
    wait_for_port(port)
    return Backend(name, port, proc)


def instance(backend: Backend, service: str = "svc") -> Instance:
    return Instance(id=backend.name, service=service, port=backend.port, health=Health.PASSING)
