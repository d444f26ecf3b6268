"""`jishi up`: the control plane, the gateway and an agent on this machine, supervised, from one jishi.yaml.

Theory of operation
-------------------
1. The file was validated before anything starts (the command exits 2 on a bad file).
2. Pre-flight: if something already answers on the server's or the gateway's address, stop with a message.
3. Start `python -m jishi.server`; wait until `GET /v1/health` answers; `apply` the file's services and routes
   and store its `alerting:` settings (the control plane evaluates the rules).
4. Start `python -m jishi.gateway` and `python -m jishi.agent`; wait until the gateway accepts connections;
   print the URLs; wait (bounded) for the instances to come into rotation and print a one-line summary.
5. Supervise: a platform process that exits is reported and restarted with capped exponential backoff
   (`jishi.core.backoff`), forever. `<data_dir>/up.json` always holds the PIDs.
6. SIGINT/SIGTERM: stop the agent first (it drains and stops its instances), then the gateway, then the
   server, each bounded; a second signal hurries it (SIGKILL). Exit 0.

Every child runs in its own session with its output in `<data_dir>/logs/<name>.log`, and dies with `up`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sys
import time
from types import FrameType
from urllib.parse import urlsplit

import httpx

from jishi.api import HttpControlPlane
from jishi.cli._children import Child, describe_exit
from jishi.cli._console import err, out
from jishi.config import ProjectConfig, listen_url
from jishi.errors import JishiError
from jishi.gateway.main import limits_argv, tls_argv
from jishi.registry import ClusterStatus

__all__ = ["Platform", "StartupError", "run_up"]

READY_TIMEOUT = 15.0  # server answering, gateway listening
INSTANCES_TIMEOUT = 30.0  # every declared instance in rotation (only reported, not fatal)
SIGNAL_DEBOUNCE = 1.0  # a second signal this soon after the first is the same one, delivered twice


class StartupError(JishiError):
    code = "startup_failed"


class _Stopped(Exception):
    """A stop was requested while starting."""


def _host_port(listen: str) -> tuple[str, int]:
    """Where a client on this machine connects to reach a server listening on `listen`."""
    url = urlsplit(listen_url(listen))
    return url.hostname or "127.0.0.1", url.port or 0


def _free_port() -> int:
    """A port free on 127.0.0.1 now, for a metrics listener nobody configured."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(listen: str) -> bool:
    try:
        with socket.create_connection(_host_port(listen), timeout=0.3):
            return True
    except OSError:
        return False


class Platform:
    """The three platform processes of one `jishi up`, and the loop that keeps them running."""

    def __init__(self, config: ProjectConfig, *, python: str = sys.executable, log_level: str = "INFO") -> None:
        self.config = config
        data, cp = config.data_dir, config.control_plane_url
        logs = data / "logs"
        gateway = [
            *("--control-plane", cp, "--listen", config.gateway.listen),
            *("--state-dir", str(data / "gateway"), "--workers", str(config.gateway.workers)),
        ]
        if config.gateway.access_log:
            gateway += ["--access-log", config.gateway.access_log]
        gateway += tls_argv(config.gateway.tls) + limits_argv(config.gateway.limits)
        # metrics listeners: the gateway's admin port (configured, or a free one) and the agent's
        self.admin_listen = config.gateway.admin_listen or f"127.0.0.1:{_free_port()}"
        self.agent_metrics_listen = f"127.0.0.1:{_free_port()}"
        gateway += ["--admin-listen", self.admin_listen]
        agent = ["--control-plane", cp, "--data-dir", str(data / "agent")]
        agent += ["--metrics-listen", self.agent_metrics_listen]
        common = ["--log-level", log_level]
        self.server = Child(
            "server",
            [python, "-m", "jishi.server", "--listen", config.server.listen, "--data-dir", str(data), *common],
            logs / "server.log",
        )
        self.gateway = Child("gateway", [python, "-m", "jishi.gateway", *gateway, *common], logs / "gateway.log")
        self.agent = Child(
            "agent",
            [python, "-m", "jishi.agent", *agent, *common],
            logs / "agent.log",
        )
        self.children = [self.server, self.gateway, self.agent]
        self.pid_file = data / "up.json"
        self.signals = 0
        self._first_signal = 0.0
        self._rng = random.Random()

    # ---- signals ---------------------------------------------------------------------------------------

    def on_signal(self, signum: int, frame: FrameType | None = None) -> None:
        now = time.monotonic()
        if self.signals and now - self._first_signal < SIGNAL_DEBOUNCE:
            return  # the same Ctrl-C delivered twice (terminal group + a wrapper such as `uv run` forwarding it)
        self.signals += 1
        name = signal.Signals(signum).name
        if self.signals == 1:
            self._first_signal = now
            err.print(f"\n{name}: stopping (agent, then gateway, then server)… again to hurry")
        else:
            err.print(f"{name} again: killing what is left")

    @property
    def stop_requested(self) -> bool:
        return self.signals > 0

    def hurry(self) -> bool:
        return self.signals > 1

    # ---- start -----------------------------------------------------------------------------------------

    def preflight(self) -> None:
        for what, listen, flag in (
            ("control plane", self.config.server.listen, "--server-listen"),
            ("gateway", self.config.gateway.listen, "--gateway-listen"),
        ):
            if _answers(listen):
                raise StartupError(
                    f"something already listens on {listen}, where the {what} should run — another `jishi up`?\n"
                    f"  Stop it, or run this one elsewhere with {flag} HOST:PORT."
                )

    def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        self.server.start(time.monotonic())
        self._write_pids()
        self._wait(self.server, "the control plane to answer", self._server_answers)
        services, routes = self.config.to_specs()
        revision = asyncio.run(self._apply())
        err.print(f"applied {len(services)} services and {len(routes)} routes (revision {revision})", style="dim")
        self.gateway.start(time.monotonic())
        self.agent.start(time.monotonic())
        self._write_pids()
        self._wait(self.gateway, "the gateway to listen", lambda: _answers(self.config.gateway.listen))

    async def _apply(self) -> int:
        services, routes = self.config.to_specs()
        async with HttpControlPlane(self.config.control_plane_url, timeout=10.0) as cp:
            revision = await cp.apply(services, routes)
            await cp.put_alerting(self.config.alerting)  # the control plane's alert evaluator follows it
            return revision

    def _server_answers(self) -> bool:
        try:
            return httpx.get(f"{self.config.control_plane_url}/v1/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def _wait(self, child: Child, what: str, ready: object) -> None:
        assert callable(ready)
        deadline = time.monotonic() + READY_TIMEOUT
        while not ready():
            if self.stop_requested:
                raise _Stopped
            code = child.poll()
            if code is not None:
                raise StartupError(
                    f"the {child.name} exited ({describe_exit(code)}) while waiting for {what}; "
                    f"its log ({child.log_path}) ends with:\n{child.tail()}"
                )
            if time.monotonic() > deadline:
                raise StartupError(
                    f"gave up waiting {READY_TIMEOUT:.0f} s for {what}; see {child.log_path}:\n{child.tail()}"
                )
            time.sleep(0.05)

    def banner(self) -> None:
        c = self.config
        out.print(f"[bold green]jishi is up[/] ({c.source})", markup=True)
        out.print(f"  gateway        {c.gateway_url}")
        out.print(f"  control plane  {c.control_plane_url}   (API docs {c.control_plane_url}/docs)")
        out.print(f"  openapi        {c.control_plane_url}/openapi.json")
        out.print(f"  dashboard      {c.control_plane_url}/ui/")
        gateway_metrics, agent_metrics = listen_url(self.admin_listen), listen_url(self.agent_metrics_listen)
        out.print(f"  metrics        {gateway_metrics}/metrics (gateway), {agent_metrics}/metrics (agent)")
        out.print(f"  logs           {c.data_dir / 'logs'}")
        for route in c.routes:
            services = ", ".join(b.service for b in route.backends)
            out.print(f"  route          {c.gateway_url}{route.prefix.rstrip('/')}/ → {services}")

    def wait_for_instances(self) -> None:
        """Print a one-line summary once every declared instance is in rotation (or after a bound)."""
        started = time.monotonic()
        desired = {s.name: s.instances for s in self.config.services.values()}
        counts: dict[str, int] = {}
        while time.monotonic() - started < INSTANCES_TIMEOUT and not self.stop_requested:
            counts = self._in_rotation()
            if all(counts.get(name, 0) >= n for name, n in desired.items()):
                break
            self.check_children()
            time.sleep(0.2)
        if self.stop_requested:
            return
        summary = ", ".join(f"{name} {counts.get(name, 0)}/{n}" for name, n in sorted(desired.items()))
        took = time.monotonic() - started
        ready = all(counts.get(name, 0) >= n for name, n in desired.items())
        state = "[green]ready[/]" if ready else "[yellow]still starting[/] (see `jishi status`)"
        out.print(f"{state} in {took:.1f} s: {summary or 'no services'} in rotation — Ctrl-C stops it", markup=True)

    def _in_rotation(self) -> dict[str, int]:
        try:
            reply = httpx.get(f"{self.config.control_plane_url}/v1/status", timeout=2.0)
            status = ClusterStatus.model_validate(reply.json())
        except (httpx.HTTPError, ValueError):
            return {}
        counts: dict[str, int] = {}
        for inst in status.instances:
            counts[inst.service] = counts.get(inst.service, 0) + int(inst.in_rotation)
        return counts

    # ---- supervise -------------------------------------------------------------------------------------

    def check_children(self) -> None:
        """Restart what exited (after its backoff delay) and report it."""
        now = time.monotonic()
        for child in self.children:
            code = child.poll()
            if code is not None and child.restart_at is None:
                delay = child.backoff.crashed(now, self._rng)
                child.restart_at = now + delay
                err.print(
                    f"[yellow]jishi: the {child.name} (pid {child.pid}) exited with {describe_exit(code)}; "
                    f"restarting it in {delay:.1f} s[/] (log: {child.log_path})",
                    markup=True,
                )
            elif child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                child.start(now)
                self._write_pids()
                err.print(f"jishi: the {child.name} is running again (pid {child.pid}, restart #{child.restarts})")

    def supervise(self) -> None:
        while not self.stop_requested:
            self.check_children()
            time.sleep(0.1)

    # ---- stop ------------------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Agent (drains and stops its instances), then gateway, then server; each bounded."""
        specs = list(self.config.services.values())
        agent_bound = min(60.0, 5.0 + max((s.drain_seconds + s.stop_timeout for s in specs), default=0.0))
        for child, bound in ((self.agent, agent_bound), (self.gateway, 8.0), (self.server, 8.0)):
            if child.popen is None:
                continue
            code = child.stop(bound, self.hurry)
            err.print(f"stopped the {child.name} ({describe_exit(code) if code is not None else 'not running'})")
        self.pid_file.unlink(missing_ok=True)

    def _write_pids(self) -> None:
        pids = {"up": os.getpid(), **{c.name: c.pid for c in self.children}}
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(pids) + "\n")
        tmp.replace(self.pid_file)


def run_up(config: ProjectConfig, *, log_level: str = "INFO") -> int:
    """Everything `jishi up` does after validation; returns the exit code (0 after a clean stop)."""
    platform = Platform(config, log_level=log_level)
    previous = {sig: signal.signal(sig, platform.on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    code = 0
    try:
        for warning in config.warnings:
            err.print(f"[yellow]warning:[/] {warning}", markup=True)
        platform.preflight()
        platform.start()
        platform.banner()
        platform.wait_for_instances()
        platform.supervise()
    except _Stopped:
        pass
    except (StartupError, JishiError) as exc:
        err.print(f"[bold red]jishi:[/] {exc}", markup=True)
        code = 1
    finally:
        platform.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
