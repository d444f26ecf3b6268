"""`jishi events [-f] [--kind K] [--subject S] [--limit N] [--json]`: what happened, newest last.

One line per event: local time, level (coloured: info dim, warning yellow, error red), kind, subject and the
reason. `--kind instance` shows every `instance.*` event, `--subject catalog` everything about the service and
its instances. `-f` keeps printing new events as they are stored, until Ctrl-C (it resumes by itself when the
control plane restarts). `--json` prints one EventRecord JSON per line.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import typer
from rich.markup import escape

from jishi.api import HttpControlPlane
from jishi.cli._console import call, err, out
from jishi.registry.model import EventRecord

__all__ = ["command", "event_line"]

LEVEL_STYLE = {"info": "dim", "warning": "yellow", "error": "bold red"}


def event_line(event: EventRecord) -> str:
    """One event as a line of rich markup."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event.time)) + f".{int(event.time % 1 * 1000):03d}"
    style = LEVEL_STYLE.get(event.level, "")
    return (
        f"{stamp} [{style}]{event.level.upper():<7}[/] [bold]{escape(event.kind):<20}[/] "
        f"{escape(event.subject)}  {escape(event.reason)}"
    )


def _print(event: EventRecord, as_json: bool) -> None:
    if as_json:
        typer.echo(event.model_dump_json())
    else:
        out.print(event_line(event), markup=True)


def command(
    ctx: typer.Context,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing new events until Ctrl-C")] = False,
    kind: Annotated[str | None, typer.Option("--kind", help="only this kind and its children (instance)")] = None,
    subject: Annotated[
        str | None, typer.Option("--subject", help="only events about this (a service, service/instance, route)")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="how many past events")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="one EventRecord JSON per line")] = False,
) -> None:
    """Recent events (instance starts, exits, restarts and health, scaling, config changes, alerts)."""

    async def show(cp: HttpControlPlane) -> None:
        past = await cp.events(limit=limit, kind=kind, subject=subject)
        for event in past:
            _print(event, as_json)
        if not follow:
            if not past and not as_json:
                err.print("no events", style="dim")
            return
        since = past[-1].id if past else None
        if not as_json:
            err.print("following new events (Ctrl-C stops)", style="dim")
        async for event in cp.follow_events(since, kind=kind, subject=subject):
            _print(event, as_json)

    url = str(ctx.obj["control_plane"])
    try:
        call(url, show)
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise typer.Exit(0) from None
