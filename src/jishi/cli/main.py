"""`jishi …`: every operation of the platform from the command line (typer + rich).

    jishi up -f jishi.yaml            control plane + gateway + agent here, supervised; Ctrl-C stops all
    jishi status [--json]             services → instances (health, pid, uptime), routes, gateways
    jishi top [--once]                live requests/s, errors and latency per service, instance and route
    jishi scale SERVICE N             change a service's instance count live
    jishi routes [--json]             the gateway's routes
    jishi kv get|put|del|watch …      the configuration key-value store
    jishi events [-f] [--kind K]      what happened: instance exits and restarts, health, scaling, alerts
    jishi silence add|list|rm         silence alerts for a while
    jishi validate [-f FILE]          check a jishi.yaml without running anything
    jishi server | gateway | agent    run one platform process in the foreground

Commands that talk to a running control plane take `--control-plane URL` (env JISHI_CONTROL_PLANE, default
http://127.0.0.1:8500). Exit codes: 0 ok, 1 the operation failed, 2 bad configuration or usage.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from jishi.api import HttpControlPlane
from jishi.cli import events, kv, silence, top
from jishi.cli._console import EXIT_CONFIG, call, config_failed, fail, out
from jishi.cli.status import route_rows, routes_table, status_json, status_view
from jishi.config import Overrides, ProjectConfig, load_config
from jishi.errors import ConfigError
from jishi.registry import ClusterStatus

__all__ = ["app", "main"]

DEFAULT_CONTROL_PLANE = "http://127.0.0.1:8500"

app = typer.Typer(
    name="jishi",
    help="jishi (基石): run services behind a load-balancing gateway, with a registry, health checks and failover.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(kv.app, name="kv")
app.command("top")(top.command)
app.command("events")(events.command)
app.add_typer(silence.app, name="silence")

FileOpt = Annotated[Path, typer.Option("--file", "-f", help="the jishi.yaml to use")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
LogLevel = Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR")]


@app.callback()
def _global(
    ctx: typer.Context,
    control_plane: Annotated[
        str, typer.Option("--control-plane", envvar="JISHI_CONTROL_PLANE", help="base URL of the control plane")
    ] = DEFAULT_CONTROL_PLANE,
) -> None:
    ctx.obj = {"control_plane": control_plane.rstrip("/")}


def _url(ctx: typer.Context) -> str:
    return str(ctx.obj["control_plane"])


def _load(file: Path, overrides: Overrides | None = None) -> ProjectConfig:
    try:
        return load_config(file, overrides)
    except ConfigError as exc:
        config_failed(exc)


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def up(
    file: FileOpt = Path("jishi.yaml"),
    server_listen: Annotated[
        str | None, typer.Option(help="HOST:PORT of the control plane (overrides the file)")
    ] = None,
    gateway_listen: Annotated[str | None, typer.Option(help="HOST:PORT of the gateway (overrides the file)")] = None,
    data_dir: Annotated[str | None, typer.Option(help="state, logs and instance data (overrides the file)")] = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Start the control plane, the gateway and an agent for FILE, and keep them running until Ctrl-C."""
    from jishi.cli.up import run_up

    config = _load(file, Overrides(server_listen=server_listen, gateway_listen=gateway_listen, data_dir=data_dir))
    raise typer.Exit(run_up(config, log_level=log_level))


@app.command()
def validate(file: FileOpt = Path("jishi.yaml"), as_json: JsonOpt = False) -> None:
    """Check FILE and say what it declares (exit 2 with file:line, field and fix when it is wrong)."""
    config = _load(file)
    if as_json:
        out.print_json(config.model_dump_json())
        return
    for warning in config.warnings:
        out.print(f"[yellow]warning:[/] {warning}", markup=True)
    services = ", ".join(f"{s.name}×{s.instances}" for s in config.services.values()) or "none"
    out.print(f"[green]ok[/] {file}: services {services}; {len(config.routes)} routes", markup=True)
    out.print(f"  gateway {config.gateway_url}, control plane {config.control_plane_url}, data {config.data_dir}")


@app.command()
def status(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Services and their instances (health, pid, restarts, uptime), routes, gateways, agents and alerts."""

    async def both(cp: HttpControlPlane) -> tuple[ClusterStatus, list[dict[str, Any]]]:
        return await cp.status(), list((await cp.alerts()).get("alerts", []))

    result, alerts = call(_url(ctx), both)
    if as_json:
        out.print(json.dumps({**status_json(result), "alerts": alerts}, indent=2), markup=False)
    else:
        out.print(status_view(result, time.time(), alerts))


@app.command()
def scale(
    ctx: typer.Context,
    service: str,
    instances: Annotated[int, typer.Argument(min=0, help="the new instance count")],
) -> None:
    """Run INSTANCES instances of SERVICE (0 stops them all)."""

    async def change(cp: HttpControlPlane) -> tuple[int, int]:
        before = (await cp.get_service(service)).instances
        after = (await cp.scale(service, instances)).instances
        return before, after

    before, after = call(_url(ctx), change)
    out.print(f"{service}: {before} → {after} instances")


@app.command()
def routes(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The gateway's routes: where each matches, its backends and how many instances serve it now."""
    result = call(_url(ctx), lambda cp: cp.status())
    if as_json:
        rows = route_rows(result.routes, result.instances)
        full = {r.name: r.model_dump(mode="json") for r in result.routes}
        out.print(json.dumps([{**full[row["name"]], "in_rotation": row["in_rotation"]} for row in rows], indent=2))
    else:
        out.print(routes_table(result.routes, result.instances))


@app.command()
def server(
    listen: Annotated[str, typer.Option(help="HOST:PORT to serve the API on")] = "127.0.0.1:8500",
    data_dir: Annotated[Path, typer.Option(help="directory of state.db")] = Path(".jishi"),
    log_level: LogLevel = "INFO",
) -> None:
    """Run the control plane (state store + HTTP API) in the foreground."""
    from jishi.server.main import parse_listen, serve

    try:
        parse_listen(listen)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)
    _logging(log_level)
    serve(listen, data_dir)


@app.command()
def gateway(
    ctx: typer.Context,
    listen: Annotated[str, typer.Option(help="HOST:PORT to serve on")] = "127.0.0.1:8080",
    state_dir: Annotated[Path, typer.Option(help="where the last-known-good snapshot lives")] = Path(".jishi/gateway"),
    workers: Annotated[int, typer.Option(min=1, help="worker processes sharing the port")] = 1,
    access_log: Annotated[Path | None, typer.Option(help="JSON-lines access log file")] = None,
    tls_cert: Annotated[str | None, typer.Option(help="PEM certificate: serve HTTPS (with --tls-key)")] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM private key of --tls-cert")] = None,
    admin_listen: Annotated[str | None, typer.Option(help="HOST:PORT for /metrics and /healthz")] = None,
    max_head_size: Annotated[str | None, typer.Option(help="largest request head, e.g. 32KiB (→ 431)")] = None,
    max_body_size: Annotated[str | None, typer.Option(help="largest request body, e.g. 100MiB (→ 413)")] = None,
    header_timeout: Annotated[str | None, typer.Option(help="a request head must arrive within it, e.g. 10s")] = None,
    body_timeout: Annotated[str | None, typer.Option(help="longest wait between body reads, e.g. 60s")] = None,
    keepalive_timeout: Annotated[str | None, typer.Option(help="idle keep-alive connections close, e.g. 75s")] = None,
    send_timeout: Annotated[str | None, typer.Option(help="cut a client taking no response byte, e.g. 60s")] = None,
    request_timeout: Annotated[str | None, typer.Option(help="longest whole request, e.g. 5m (0: none)")] = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Run the gateway (HTTP reverse proxy following the control plane) in the foreground."""
    from jishi.config import GatewayTLS
    from jishi.gateway.main import limits_from_options, serve

    if (tls_cert is None) != (tls_key is None):
        fail("--tls-cert and --tls-key go together: give both to serve HTTPS, or neither", EXIT_CONFIG)
    tls = GatewayTLS(cert=tls_cert, key=tls_key) if tls_cert and tls_key else None
    _logging(log_level)
    try:
        limits = limits_from_options(
            max_head_size=max_head_size,
            max_body_size=max_body_size,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            keepalive_timeout=keepalive_timeout,
            send_timeout=send_timeout,
            request_timeout=request_timeout,
        )
        serve(_url(ctx), listen, state_dir, workers, access_log, tls, admin_listen=admin_listen, limits=limits)
    except ConfigError as exc:
        fail(str(exc), EXIT_CONFIG)


@app.command()
def agent(
    ctx: typer.Context,
    data_dir: Annotated[Path, typer.Option(help="agent id and instance logs")] = Path(".jishi/agent"),
    agent_id: Annotated[str | None, typer.Option(help="stable id of this agent")] = None,
    metrics_listen: Annotated[str | None, typer.Option(help="HOST:PORT for the agent's /metrics")] = None,
    log_level: LogLevel = "INFO",
) -> None:
    """Run an agent (starts, checks and restarts service instances) in the foreground."""
    from jishi.agent.main import serve

    _logging(log_level)
    serve(_url(ctx), data_dir, agent_id, metrics_listen=metrics_listen)


def main() -> None:
    """The console script `jishi`."""
    app()
