"""`jishi gateway`: the data-plane process — proxy + follower, one or several workers.

    serve("http://127.0.0.1:8500", "127.0.0.1:8080", Path(".jishi/gateway"))     # blocks until SIGINT/SIGTERM
    python -m jishi.gateway --control-plane URL --listen HOST:PORT --state-dir DIR [--workers N]
                            [--tls-cert FILE --tls-key FILE [--tls-sni HOSTS CERT KEY]...]

With `tls` (jishi.yaml's `gateway.tls`) the gateway serves HTTPS on `listen` (`jishi.gateway.tls`).

With `workers > 1` this process supervises N worker processes that each bind the port with SO_REUSEPORT (the
kernel spreads connections over them), follow the control plane and register themselves; a worker that dies
is started again after a second. SIGTERM/SIGINT: stop accepting, finish requests in progress (up to `grace`
seconds), revoke the registration lease, exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl as ssl_module
import subprocess
import sys
import time
from pathlib import Path

import uvloop

from jishi.config import GatewayTLS
from jishi.config.listen import parse_listen
from jishi.errors import ConfigError
from jishi.gateway.accesslog import AccessLog
from jishi.gateway.follower import Follower
from jishi.gateway.proxy import Proxy
from jishi.gateway.tls import server_context

__all__ = ["parse_listen", "run", "serve", "tls_argv", "tls_context"]

log = logging.getLogger(__name__)


async def run(
    control_plane: str,
    listen: str = "127.0.0.1:8080",
    state_dir: Path = Path(".jishi/gateway"),
    *,
    access_log: Path | None = None,
    reuse_port: bool = False,
    worker: int | None = None,
    grace: float = 10.0,
    stop: asyncio.Event | None = None,
    tls: GatewayTLS | None = None,
) -> None:
    """Run one gateway worker on the current loop until `stop` is set (or SIGINT/SIGTERM if `stop` is None)."""
    from jishi.api import HttpControlPlane

    host, port = parse_listen(listen)
    ssl = tls_context(tls)
    scheme = "https" if ssl is not None else "http"
    proxy = Proxy(access_log=AccessLog(access_log) if access_log is not None else None)
    cp = HttpControlPlane(control_plane)
    suffix = f"-w{worker}" if worker is not None else ""
    follower = Follower(
        cp, proxy, state_dir, gateway_id=f"{socket.gethostname()}-{port}{suffix}", url=f"{scheme}://{host}:{port}"
    )
    follower.load_snapshot()
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    bound = await proxy.start(host, port, reuse_port=reuse_port, ssl=ssl)
    log.info("jishi gateway listening on %s://%s:%d (control plane %s)", scheme, host, bound, control_plane)
    following = loop.create_task(follower.run(), name="gateway-follower")
    try:
        await stop.wait()
        log.info("gateway stopping: finishing requests in progress (up to %g s)", grace)
        await proxy.stop(grace)
    finally:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await cp.aclose()
    log.info("gateway stopped")


def serve(
    control_plane: str,
    listen: str = "127.0.0.1:8080",
    state_dir: Path = Path(".jishi/gateway"),
    workers: int = 1,
    access_log: Path | None = None,
    tls: GatewayTLS | None = None,
) -> None:
    """Run the gateway until SIGINT/SIGTERM (blocking); see the module doc."""
    parse_listen(listen)
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, not {workers}", field="--workers")
    tls_context(tls)  # a bad certificate is reported here, before any worker starts
    if workers == 1:
        uvloop.run(run(control_plane, listen, state_dir, access_log=access_log, tls=tls))
        return
    _supervise(control_plane, listen, state_dir, workers, access_log, tls)


def tls_context(tls: GatewayTLS | None) -> ssl_module.SSLContext | None:
    """The server context for `gateway.tls` (None: plain HTTP); ConfigError if a file is missing or invalid."""
    if tls is None:
        return None
    return server_context(tls.cert, tls.key, [(entry.hosts, entry.cert, entry.key) for entry in tls.sni])


def _worker_argv(
    control_plane: str, listen: str, state_dir: Path, index: int, access_log: Path | None, tls: GatewayTLS | None
) -> list[str]:
    argv = [sys.executable, "-m", "jishi.gateway", "--control-plane", control_plane, "--listen", listen]
    argv += ["--state-dir", str(state_dir), "--worker-index", str(index)]
    if access_log is not None:
        argv += ["--access-log", f"{access_log}.{index}"]
    return argv + tls_argv(tls)


def tls_argv(tls: GatewayTLS | None) -> list[str]:
    """The `python -m jishi.gateway` options that carry `gateway.tls` (empty without TLS)."""
    if tls is None:
        return []
    argv = ["--tls-cert", tls.cert, "--tls-key", tls.key]
    for entry in tls.sni:
        argv += ["--tls-sni", ",".join(entry.hosts), entry.cert, entry.key]
    return argv


def _supervise(
    control_plane: str, listen: str, state_dir: Path, workers: int, access_log: Path | None, tls: GatewayTLS | None
) -> None:
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    procs: dict[int, subprocess.Popen[bytes]] = {}
    for i in range(workers):
        procs[i] = subprocess.Popen(_worker_argv(control_plane, listen, state_dir, i, access_log, tls))
    log.info("gateway supervising %d workers on %s: pids %s", workers, listen, [p.pid for p in procs.values()])
    try:
        while not stopping:
            time.sleep(0.2)
            for i, proc in list(procs.items()):
                if proc.poll() is not None and not stopping:
                    log.error("gateway worker %d (pid %d) exited with %s; restarting it", i, proc.pid, proc.returncode)
                    time.sleep(1.0)
                    procs[i] = subprocess.Popen(_worker_argv(control_plane, listen, state_dir, i, access_log, tls))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log.error("gateway worker pid %d did not stop in 15 s; killing it", proc.pid)
                proc.kill()
                proc.wait()
