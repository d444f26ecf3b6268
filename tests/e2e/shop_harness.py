"""The shop demo under `jishi up` on free ports, and a steady HTTP load to measure failures with.

`ShopRun` starts `python -m jishi up` on a copy of examples/shop in a temporary folder, waits until every
declared instance is in rotation, and on `stop()` sends SIGTERM, waits for a clean exit and checks that no
process it ever saw (platform processes and instances, by PID) is left; survivors are SIGKILLed and reported.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from jishi.testing import ManagedProcess, ProcessGroup, free_port, wait_for_port

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"
DESIRED = {"catalog": 3, "orders": 2, "users": 2}


def copy_shop(dest: Path) -> Path:
    """A copy of examples/shop (without its runtime data) in `dest`; returns its jishi.yaml."""
    shutil.copytree(SHOP, dest, ignore=shutil.ignore_patterns(".jishi", "__pycache__"))
    return dest / "jishi.yaml"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@dataclass
class ShopRun:
    tmp: Path
    procs: ProcessGroup
    server_port: int = field(default_factory=free_port)
    gateway_port: int = field(default_factory=free_port)
    seen_pids: set[int] = field(default_factory=set)
    up: ManagedProcess | None = None

    @property
    def gateway(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    @property
    def control_plane(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    @property
    def data_dir(self) -> Path:
        return self.tmp / "shop" / ".jishi"

    def start(self) -> ShopRun:
        config = copy_shop(self.tmp / "shop")
        self.up = self.procs.python(
            "up",
            *("-m", "jishi", "up", "-f", str(config)),
            *("--server-listen", f"127.0.0.1:{self.server_port}", "--gateway-listen", f"127.0.0.1:{self.gateway_port}"),
        )
        wait_for_port(self.gateway_port, timeout=30)
        self.wait_in_rotation(DESIRED, timeout=30)
        return self

    # ---- looking ------------------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        reply = httpx.get(f"{self.control_plane}/v1/status", timeout=2.0)
        reply.raise_for_status()
        doc: dict[str, Any] = reply.json()
        self.seen_pids.update(i["pid"] for i in doc["instances"] if i.get("pid"))
        return doc

    def in_rotation(self, service: str) -> list[dict[str, Any]]:
        return [
            i
            for i in self.status()["instances"]
            if i["service"] == service and i["health"] != "critical" and not i["draining"]
        ]

    def wait_in_rotation(self, counts: dict[str, int], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: dict[str, int] = {}
        while time.monotonic() < deadline:
            try:
                last = {name: len(self.in_rotation(name)) for name in counts}
            except httpx.HTTPError:
                last = {}
            if last == counts:
                return
            assert self.up is not None and self.up.alive(), self.up.log() if self.up else ""
            time.sleep(0.1)
        raise AssertionError(f"instances in rotation: {last}, wanted {counts}\n{self.logs()}")

    def platform_pids(self) -> dict[str, int]:
        return {k: v for k, v in json.loads((self.data_dir / "up.json").read_text()).items() if v}

    def logs(self) -> str:
        parts = [self.up.log() if self.up else ""]
        for name in ("server", "gateway", "agent"):
            path = self.data_dir / "logs" / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name}.log\n" + "\n".join(path.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(parts)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.gateway + path, timeout=5.0)

    def jishi(self, *args: str) -> tuple[int, str, str]:
        argv = [sys.executable, "-m", "jishi", "--control-plane", self.control_plane, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        return done.returncode, done.stdout, done.stderr

    # ---- stopping -----------------------------------------------------------------------------------------

    def stop(self, timeout: float = 40.0) -> int | None:
        """SIGTERM `up`; its exit code. Afterwards no process seen during the run may be alive."""
        if self.up is None:
            return None
        with contextlib.suppress(httpx.HTTPError):  # the control plane may be down on purpose; PIDs seen so far
            self.status()
        with contextlib.suppress(OSError, ValueError):  # `up` may have stopped already and removed the file
            self.seen_pids.update(self.platform_pids().values())
        self.up.signal(signal.SIGTERM)
        try:
            code: int | None = self.up.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        self.seen_pids.discard(self.up.pid)
        deadline = time.monotonic() + 5
        while any(alive(p) for p in self.seen_pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = sorted(p for p in self.seen_pids if alive(p))
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
        assert not survivors, f"processes left behind after `jishi up` stopped: {survivors}\n{self.logs()}"
        return code


class Load:
    """`threads` keep-alive clients GETting `path` through the gateway, together about `rate` requests/s.

    A subclass changes what one request is (`_request`) and what counts as a success (`_accept`)."""

    def __init__(
        self, gateway_port: int, path: str, rate: float = 200.0, threads: int = 16, timeout: float = 5.0
    ) -> None:
        self.port, self.path, self.timeout = gateway_port, path, timeout
        self.interval = threads / rate
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.by_instance: Counter[str] = Counter()
        self.started = self.elapsed = 0.0
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)]

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=3 * self.timeout)
        self.elapsed = time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Successful requests per second over the whole run."""
        return self.ok / self.elapsed

    def _request(self, conn: http.client.HTTPConnection, n: int, i: int) -> None:
        """Send request `i` of client `n` on `conn`."""
        conn.request("GET", self.path)

    def _accept(self, status: int, body: bytes) -> bool:
        """Count a response; False if it is a failure."""
        if status != 200:
            return False
        instance = json.loads(body).get("instance", "?")
        with self.lock:
            self.ok += 1
            self.by_instance[instance] += 1
        return True

    def _run(self, n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        next_at = time.monotonic()
        i = 0
        while not self.stop_event.is_set():
            i += 1
            try:
                self._request(conn, n, i)
                resp = conn.getresponse()
                body = resp.read()
                if not self._accept(resp.status, body):
                    self._fail(f"{resp.status} {body[:300]!r}")
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException, ValueError) as exc:
                self._fail(repr(exc))
                conn.close()
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        conn.close()

    def _fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(f"{time.monotonic():.3f} {what}")
