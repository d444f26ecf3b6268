"""`jishi gateway`: the data-plane process — proxy + follower, one or several workers.

    serve("http://127.0.0.1:8500", "127.0.0.1:8080", Path(".jishi/gateway"))     # blocks until SIGINT/SIGTERM
    python -m jishi.gateway --control-plane URL --listen HOST:PORT --state-dir DIR [--workers N]
                            [--admin-listen HOST:PORT] [--tls-cert FILE --tls-key FILE [--tls-sni HOSTS CERT KEY]...]
                            [--max-head-size SIZE] [--max-body-size SIZE] [--header-timeout DURATION]
                            [--body-timeout DURATION] [--keepalive-timeout DURATION]
                            [--send-timeout DURATION] [--request-timeout DURATION]

With `tls` (jishi.yaml's `gateway.tls`) the gateway serves HTTPS on `listen` (`jishi.gateway.tls`). `limits`
(jishi.yaml's `gateway.limits`, `jishi.config.GatewayLimits`) are what clients may send and how slowly; every
worker gets them (`limits_argv`, `limits_from_options`).

With `workers > 1` this process supervises N worker processes that each bind the port with SO_REUSEPORT (the
kernel spreads connections over them), follow the control plane and register themselves; a worker that dies
is started again after a second. SIGTERM/SIGINT: stop accepting, finish requests in progress (up to `grace`
seconds), revoke the registration lease, exit.

Metrics (`jishi.gateway.stats`) are always recorded. The gateway — the one process, or the parent of the
workers, which sums the files its workers write every second (`jishi.gateway.reporter`) — reports them to the
control plane every second (`report_gateway`, under the id HOST-PORT) with the gateway's events, and serves
them at `http://ADMIN/metrics` when `admin_listen` is given (`jishi.gateway.admin`).
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
from pydantic import ValidationError

from jishi.config import GatewayLimits, GatewayTLS, parse_duration, parse_size
from jishi.config.listen import parse_listen
from jishi.errors import ConfigError
from jishi.gateway.accesslog import AccessLog
from jishi.gateway.admin import AdminServer
from jishi.gateway.follower import Follower
from jishi.gateway.proxy import Proxy
from jishi.gateway.reporter import LocalMetrics, MetricsSource, Reporter, WorkerMetrics, publish_worker
from jishi.gateway.stats import Stats
from jishi.gateway.tls import server_context

__all__ = ["limits_argv", "limits_from_options", "parse_listen", "run", "serve", "tls_argv", "tls_context"]

log = logging.getLogger(__name__)


async def run(
    control_plane: str,
    listen: str = "127.0.0.1:8080",
    state_dir: Path = Path(".jishi/gateway"),
    *,
    access_log: Path | None = None,
    reuse_port: bool = False,
    worker: int | None = None,
    workers: int = 1,
    grace: float = 10.0,
    stop: asyncio.Event | None = None,
    tls: GatewayTLS | None = None,
    admin_listen: str | None = None,
    report_interval: float = 1.0,
    limits: GatewayLimits | None = None,
) -> None:
    """Run one gateway worker on the current loop until `stop` is set (or SIGINT/SIGTERM if `stop` is None).

    As a worker (`worker` set) it writes its metrics to `state_dir/metrics/` for its parent; otherwise it
    reports them itself and serves them on `admin_listen` (if given)."""
    from jishi.api import HttpControlPlane

    host, port = parse_listen(listen)
    ssl = tls_context(tls)
    scheme = "https" if ssl is not None else "http"
    limits = limits or GatewayLimits()
    proxy = Proxy(
        access_log=AccessLog(access_log) if access_log is not None else None,
        max_head_size=limits.max_head_size,
        max_body_size=limits.max_body_size,
        header_timeout=limits.header_timeout,
        body_timeout=limits.body_timeout,
        keepalive_timeout=limits.keepalive_timeout,
        send_timeout=limits.send_timeout,
        request_timeout=limits.request_timeout,
    )
    proxy.stats = Stats()
    proxy.workers = workers  # a Redis rate limit's local fallback gives each worker its share
    started = time.time()
    cp = HttpControlPlane(control_plane)
    suffix = f"-w{worker}" if worker is not None else ""
    follower = Follower(cp, proxy, state_dir, gateway_id=f"{gateway_id(port)}{suffix}", url=f"{scheme}://{host}:{port}")
    follower.load_snapshot()
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    bound = await proxy.start(host, port, reuse_port=reuse_port, ssl=ssl)
    log.info("jishi gateway listening on %s://%s:%d (control plane %s)", scheme, host, bound, control_plane)
    background = [loop.create_task(follower.run(), name="gateway-follower")]
    admin: AdminServer | None = None
    reporter: Reporter | None = None
    try:
        if worker is not None:
            publishing = publish_worker(proxy, state_dir / "metrics", interval=report_interval, started_at=started)
            background.append(loop.create_task(publishing, name="gateway-metrics-file"))
        else:
            metrics = LocalMetrics(proxy, started)
            reporter = Reporter(cp, gateway_id(port), metrics, interval=report_interval)
            background.append(loop.create_task(reporter.run(), name="gateway-reporter"))
            admin = await _start_admin(admin_listen, metrics)
        await stop.wait()
        log.info("gateway stopping: finishing requests in progress (up to %g s)", grace)
        await proxy.stop(grace)
    finally:
        await _cancel(background)
        if admin is not None:
            await admin.stop()
        if reporter is not None:
            await _last_report(reporter)
        await cp.aclose()
    log.info("gateway stopped")


def gateway_id(port: int) -> str:
    """The id a gateway reports its metrics under: HOST-PORT (its workers register as HOST-PORT-wN)."""
    return f"{socket.gethostname()}-{port}"


async def _start_admin(admin_listen: str | None, metrics: MetricsSource) -> AdminServer | None:
    if admin_listen is None:
        return None
    host, port = parse_listen(admin_listen)
    admin = AdminServer(metrics.current)
    await admin.start(host, port)
    return admin


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _last_report(reporter: Reporter) -> None:
    """One more report on the way out, so the last second's traffic and events are not lost (bounded)."""
    try:
        async with asyncio.timeout(1.0):
            await reporter.push()
    except TimeoutError:
        log.info("the last metrics report did not go through in 1 s")


def serve(
    control_plane: str,
    listen: str = "127.0.0.1:8080",
    state_dir: Path = Path(".jishi/gateway"),
    workers: int = 1,
    access_log: Path | None = None,
    tls: GatewayTLS | None = None,
    admin_listen: str | None = None,
    limits: GatewayLimits | None = None,
) -> None:
    """Run the gateway until SIGINT/SIGTERM (blocking); see the module doc."""
    parse_listen(listen)
    if admin_listen is not None:
        parse_listen(admin_listen)
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, not {workers}", field="--workers")
    tls_context(tls)  # a bad certificate is reported here, before any worker starts
    if workers == 1:
        gateway = run(
            control_plane, listen, state_dir, access_log=access_log, tls=tls, admin_listen=admin_listen, limits=limits
        )
        uvloop.run(gateway)
        return
    uvloop.run(_supervise(control_plane, listen, state_dir, workers, access_log, tls, admin_listen, limits))


def tls_context(tls: GatewayTLS | None) -> ssl_module.SSLContext | None:
    """The server context for `gateway.tls` (None: plain HTTP); ConfigError if a file is missing or invalid."""
    if tls is None:
        return None
    return server_context(tls.cert, tls.key, [(entry.hosts, entry.cert, entry.key) for entry in tls.sni])


def _worker_argv(
    control_plane: str,
    listen: str,
    state_dir: Path,
    index: int,
    workers: int,
    access_log: Path | None,
    tls: GatewayTLS | None,
    limits: GatewayLimits | None,
) -> list[str]:
    argv = [sys.executable, "-m", "jishi.gateway", "--control-plane", control_plane, "--listen", listen]
    argv += ["--state-dir", str(state_dir), "--worker-index", str(index), "--workers", str(workers)]
    if access_log is not None:
        argv += ["--access-log", f"{access_log}.{index}"]
    return argv + tls_argv(tls) + limits_argv(limits)


def tls_argv(tls: GatewayTLS | None) -> list[str]:
    """The `python -m jishi.gateway` options that carry `gateway.tls` (empty without TLS)."""
    if tls is None:
        return []
    argv = ["--tls-cert", tls.cert, "--tls-key", tls.key]
    for entry in tls.sni:
        argv += ["--tls-sni", ",".join(entry.hosts), entry.cert, entry.key]
    return argv


def limits_argv(limits: GatewayLimits | None) -> list[str]:
    """The `python -m jishi.gateway` options that carry `gateway.limits` (empty for none: the defaults)."""
    if limits is None:
        return []
    return [
        *("--max-head-size", str(limits.max_head_size), "--max-body-size", str(limits.max_body_size)),
        *("--header-timeout", repr(limits.header_timeout), "--body-timeout", repr(limits.body_timeout)),
        *("--keepalive-timeout", repr(limits.keepalive_timeout), "--send-timeout", repr(limits.send_timeout)),
        *("--request-timeout", repr(limits.request_timeout)),
    ]


def limits_from_options(
    *,
    max_head_size: str | None = None,
    max_body_size: str | None = None,
    header_timeout: str | None = None,
    body_timeout: str | None = None,
    keepalive_timeout: str | None = None,
    send_timeout: str | None = None,
    request_timeout: str | None = None,
) -> GatewayLimits:
    """`GatewayLimits` from command-line text ("32KiB", "60s"; None: the default); a `ConfigError` naming the
    option for a bad value."""
    given = {
        "max_head_size": (max_head_size, parse_size),
        "max_body_size": (max_body_size, parse_size),
        "header_timeout": (header_timeout, parse_duration),
        "body_timeout": (body_timeout, parse_duration),
        "keepalive_timeout": (keepalive_timeout, parse_duration),
        "send_timeout": (send_timeout, parse_duration),
        "request_timeout": (request_timeout, parse_duration),
    }
    values: dict[str, float] = {}
    for name, (text, parse) in given.items():
        if text is None:
            continue
        option = "--" + name.replace("_", "-")
        try:
            values[name] = parse(text)
            GatewayLimits.model_validate({name: values[name]})
        except (ValueError, ValidationError) as exc:
            message = f"{exc.errors()[0]['msg']}, got {text!r}" if isinstance(exc, ValidationError) else str(exc)
            example = "32KiB" if name.endswith("size") else "10s"
            raise ConfigError(message, field=option, fix=f"e.g. {option} {example}") from None
    return GatewayLimits.model_validate(values)


async def _supervise(
    control_plane: str,
    listen: str,
    state_dir: Path,
    workers: int,
    access_log: Path | None,
    tls: GatewayTLS | None,
    admin_listen: str | None,
    limits: GatewayLimits | None,
) -> None:
    from jishi.api import HttpControlPlane  # imported before the workers start, not while they import

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    procs: dict[int, subprocess.Popen[bytes]] = {}
    metrics = WorkerMetrics(state_dir / "metrics", lambda: [p.pid for p in procs.values() if p.poll() is None])
    metrics.clear()

    def start(i: int) -> None:
        procs[i] = subprocess.Popen(_worker_argv(control_plane, listen, state_dir, i, workers, access_log, tls, limits))

    for i in range(workers):
        start(i)
    log.info("gateway supervising %d workers on %s: pids %s", workers, listen, [p.pid for p in procs.values()])
    cp = HttpControlPlane(control_plane)
    reporter = Reporter(cp, gateway_id(parse_listen(listen)[1]), metrics)
    reporting = loop.create_task(reporter.run(), name="gateway-reporter")
    admin: AdminServer | None = None
    try:
        admin = await _start_admin(admin_listen, metrics)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
            for i, proc in list(procs.items()):
                if proc.poll() is not None and not stop.is_set():
                    log.error("gateway worker %d (pid %d) exited with %s; restarting it", i, proc.pid, proc.returncode)
                    await asyncio.sleep(1.0)
                    start(i)
    finally:
        await _cancel([reporting])
        if admin is not None:
            await admin.stop()
        await _stop_workers(list(procs.values()))
        await _last_report(reporter)  # with what the workers wrote as they stopped
        await cp.aclose()


async def _stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            log.error("gateway worker pid %d did not stop in 15 s; killing it", proc.pid)
            proc.kill()
            await asyncio.to_thread(proc.wait)
