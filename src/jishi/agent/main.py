"""`jishi agent` / `python -m jishi.agent`: run the agent against a control plane until SIGTERM or SIGINT.

The first SIGTERM/SIGINT stops every instance gracefully (drain, SIGTERM, SIGKILL after the timeout) and
revokes the lease; a second one kills the instances at once. Exit status 0 after a clean stop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from jishi.agent.agent import Agent
from jishi.agent.metrics import serve_metrics

__all__ = ["main", "run_until_signalled", "serve"]

log = logging.getLogger(__name__)


def serve(
    control_plane: str,
    data_dir: Path = Path(".jishi/agent"),
    agent_id: str | None = None,
    metrics_listen: str | None = None,
) -> None:
    """Run an agent against the control plane at `control_plane` (a base URL); blocks until stopped.
    With `metrics_listen` (HOST:PORT) it serves its metrics there (`jishi.agent.metrics`)."""
    asyncio.run(_serve(control_plane, Path(data_dir), agent_id, metrics_listen))


async def _serve(control_plane: str, data_dir: Path, agent_id: str | None, metrics_listen: str | None = None) -> None:
    from jishi.api import HttpControlPlane

    cp = HttpControlPlane(control_plane)
    agent = Agent(cp, data_dir, agent_id)
    metrics = await serve_metrics(agent, metrics_listen) if metrics_listen else None
    try:
        await run_until_signalled(agent)
    finally:
        if metrics is not None:
            await metrics.stop()
        await cp.aclose()


async def run_until_signalled(agent: Agent) -> None:
    """Run `agent`; the first SIGTERM/SIGINT stops it gracefully, a second one cancels it (instances killed)."""
    loop = asyncio.get_running_loop()
    current = asyncio.current_task()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("%s: stopping instances gracefully", signal.Signals(signum).name)
            agent.stop()
        elif current is not None:
            log.warning("%s again: killing instances now", signal.Signals(signum).name)
            current.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await agent.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jishi agent", description="Run service instances for jishi.")
    parser.add_argument("--control-plane", default="http://127.0.0.1:8500", help="control-plane base URL")
    parser.add_argument("--data-dir", type=Path, default=Path(".jishi/agent"), help="agent id and instance logs")
    parser.add_argument("--agent-id", default=None, help="stable id of this agent (default: kept in --data-dir)")
    parser.add_argument("--metrics-listen", default=None, help="HOST:PORT to serve /metrics on (default: none)")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the agent's own log
    try:
        serve(args.control_plane, args.data_dir, args.agent_id, args.metrics_listen)
    except asyncio.CancelledError:
        return 1
    return 0
