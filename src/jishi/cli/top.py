"""`jishi top`: a live terminal view of services, instances and routes with their rates, errors and latencies.

    jishi top              redraw every second until Ctrl-C
    jishi top --once       print one frame and exit (scripts, tests)

A frame is `top_view(status, stats, now)`, a pure function of the cluster status (`GET /v1/status`) and the
gateways' traffic (`GET /v1/stats`: requests and errors since start, rps / error ratio / p50 / p99 over the last
window). A control plane without `/v1/stats` still gives a frame: the rate columns show "–" and a line says why.
`fetch_frame(client)` reads both documents through one httpx client, so tests can hand it an in-process app.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import typer
from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from jishi.cli._console import EXIT_FAILED, err, out
from jishi.cli.status import HEALTH_STYLE, format_duration
from jishi.registry.model import Instance
from jishi.registry.registry import ClusterStatus

__all__ = ["Frame", "command", "fetch_frame", "run_top", "top_view"]

Row = Mapping[str, Any]
BREAKER_STYLE = {"closed": "green", "open": "red", "forced_open": "red", "half_open": "yellow"}


@dataclass(frozen=True)
class Frame:
    """What one redraw shows: the status, the stats document (None if unavailable) and why it is missing."""

    status: ClusterStatus
    stats: dict[str, Any] | None
    stats_problem: str | None = None


async def fetch_frame(client: httpx.AsyncClient) -> Frame:
    """GET /v1/status and /v1/stats; a failing status raises (httpx errors), a failing stats is only noted."""
    status_reply, stats_reply = await asyncio.gather(client.get("/v1/status"), client.get("/v1/stats"))
    if status_reply.status_code != 200:
        raise httpx.HTTPStatusError(_message(status_reply), request=status_reply.request, response=status_reply)
    status = ClusterStatus.model_validate(status_reply.json())
    if stats_reply.status_code == 200:
        return Frame(status, stats_reply.json(), None)
    if stats_reply.status_code == 404:
        return Frame(status, None, "this control plane has no /v1/stats (no traffic metrics)")
    return Frame(status, None, _message(stats_reply))


def _message(reply: httpx.Response) -> str:
    try:
        message = str(reply.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = reply.text[:200]
    return f"{reply.request.method} {reply.request.url.path}: {reply.status_code} {message}"


# ---- rendering ------------------------------------------------------------------------------------------


def _rate(row: Row | None) -> str:
    return "–" if row is None else f"{row['rps']:.1f}"


def _errors(row: Row | None) -> Text:
    if row is None:
        return Text("–", style="dim")
    percent = 100.0 * row["error_ratio"]
    style = "red" if percent >= 5 else "yellow" if percent >= 1 else "green"
    return Text(f"{percent:.1f}%", style=style)


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


RATE_COLUMNS = ["rps", "err%", "p50", "p99"]  # latencies in ms
NUMERIC = {*RATE_COLUMNS, "live", "pid", "up", "rst", "requests", "5xx", "limited", "retries"}


def _table(title: str, columns: list[str]) -> Table:
    table = Table(
        title=title, title_justify="left", expand=False, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True
    )
    for column in columns:
        numeric = column in NUMERIC  # numbers never wrap; names wrap on a narrow terminal rather than be cut
        table.add_column(column, justify="right" if numeric else "left", no_wrap=numeric, overflow="fold")
    return table


def _rates(row: Row | None) -> list[RenderableType]:
    return [
        _rate(row),
        _errors(row),
        _ms(row["p50_ms"] if row else None),
        _ms(row["p99_ms"] if row else None),
    ]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _health(inst: Instance) -> Text:
    if inst.draining:
        return Text("draining", style="bright_black")
    return Text(inst.health.value, style=HEALTH_STYLE[inst.health])


def top_view(frame: Frame, now: float, *, url: str = "") -> Group:
    """One frame: a summary line, then services, instances and routes with their traffic."""
    status, stats = frame.status, frame.stats or {}
    service_rows: Mapping[str, Row] = stats.get("services", {})
    instance_rows: Mapping[str, Row] = stats.get("instances", {})
    route_rows: Mapping[str, Row] = stats.get("routes", {})
    policies: Mapping[str, Row] = stats.get("policies", {})
    by_service: dict[str, list[Instance]] = {}
    for inst in status.instances:
        by_service.setdefault(inst.service, []).append(inst)
    desired = {s.name: s.instances for s in status.services}
    live = sum(i.in_rotation for i in status.instances)

    head = Text()
    head.append("jishi top", style="bold")
    head.append(f"  {url}  {time.strftime('%H:%M:%S', time.localtime(now))}  ", style="dim")
    head.append(f"{_count(len(desired), 'service')}, {live}/{len(status.instances)} instances in rotation, ")
    head.append(_count(len(status.gateways), "gateway"), style="" if status.gateways else "red")
    if frame.stats is not None:
        total = sum(float(r["rps"]) for r in route_rows.values())
        head.append(f", {total:.1f} req/s over the last {stats.get('window', 10):g} s")
    parts: list[RenderableType] = [head]
    if frame.stats_problem:
        parts.append(Text(f"traffic metrics not available: {frame.stats_problem}", style="yellow"))

    services = _table(
        "[bold]services[/] [dim](live: in rotation/desired; p50, p99 in ms)[/]",
        ["service", "live", *RATE_COLUMNS, "requests", "5xx"],
    )
    for name in sorted(set(desired) | set(by_service)):
        mine = by_service.get(name, [])
        in_rotation = sum(i.in_rotation for i in mine)
        want = desired.get(name, len(mine))
        style = "green" if in_rotation >= want else "yellow" if in_rotation else "red"
        row = service_rows.get(name)
        totals = [str(row["requests"]), str(row["status"]["5xx"])] if row else ["–", "–"]
        services.add_row(name, Text(f"{in_rotation}/{want}", style=style), *_rates(row), *totals)
    parts.append(services)

    instances = _table("[bold]instances[/]", ["instance", "address", "pid", "health", "up", "rst", *RATE_COLUMNS])
    for inst in sorted(status.instances, key=lambda i: (i.service, i.id)):
        up = format_duration(now - inst.started_at) if inst.started_at else "–"
        pid = str(inst.pid) if inst.pid is not None else "–"
        row = instance_rows.get(f"{inst.service}/{inst.id}")
        instances.add_row(
            inst.id, f"{inst.address}:{inst.port}", pid, _health(inst), up, str(inst.restarts),
            *_rates(row),
        )  # fmt: skip
    if not status.instances:
        instances.add_row(Text("no instances", style="dim"), *[""] * 9)
    parts.append(instances)

    routes = _table("[bold]routes[/]", ["route", "prefix", *RATE_COLUMNS, "breaker", "limited", "retries"])
    for route in sorted(status.routes, key=lambda r: (r.prefix, r.name)):
        policy = policies.get(route.name, {})
        breaker = policy.get("breaker") or ("configured" if route.breaker else "off")
        routes.add_row(
            route.name,
            f"{route.host or ''}{route.prefix}",
            *_rates(route_rows.get(route.name)),
            Text(breaker, style=BREAKER_STYLE.get(breaker, "dim")),
            str(policy.get("rate_limited", 0) + policy.get("shed", 0)) if policy else "–",
            str(policy.get("retries", 0)) if policy else "–",
        )
    if not status.routes:
        routes.add_row(Text("no routes", style="dim"), *[""] * 8)
    parts.append(routes)
    return Group(*parts)


# ---- running --------------------------------------------------------------------------------------------


async def _once(url: str, transport: httpx.AsyncBaseTransport | None) -> Frame:
    async with httpx.AsyncClient(base_url=url, timeout=5.0, transport=transport) as client:
        return await fetch_frame(client)


async def _view(client: httpx.AsyncClient, url: str, interval: float) -> RenderableType:
    try:
        return top_view(await fetch_frame(client), time.time(), url=url)
    except httpx.HTTPError as exc:
        return Text(f"jishi top: {url}: {exc or type(exc).__name__} — retrying every {interval:g} s", "red")


async def _live(url: str, interval: float, transport: httpx.AsyncBaseTransport | None) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5.0, transport=transport) as client:
        if not out.is_terminal:  # piped or logged: one frame after another, like `top -b`
            while True:
                out.print(await _view(client, url, interval), "")
                await asyncio.sleep(interval)
        with Live(console=out, screen=True, auto_refresh=False) as live:
            while True:
                live.update(await _view(client, url, interval), refresh=True)
                await asyncio.sleep(interval)


def run_top(
    url: str, *, once: bool = False, interval: float = 1.0, transport: httpx.AsyncBaseTransport | None = None
) -> int:
    """Show the live view until Ctrl-C (or one frame with `once`); the exit code."""
    if once:
        try:
            frame = asyncio.run(_once(url, transport))
        except httpx.HTTPError as exc:
            err.print(f"[bold red]jishi:[/] cannot read the control plane at {url}: {exc or type(exc).__name__}")
            return EXIT_FAILED
        out.print(top_view(frame, time.time(), url=url))
        return 0
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a live view ends
        asyncio.run(_live(url, interval, transport))
    return 0


def command(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="print one frame and exit")] = False,
    interval: Annotated[float, typer.Option(min=0.1, help="seconds between redraws")] = 1.0,
) -> None:
    """Live view of services, instances and routes: requests/s, error %, p50 and p99 (Ctrl-C quits)."""
    raise typer.Exit(run_top(str(ctx.obj["control_plane"]), once=once, interval=interval))
