"""`jishi silence add|list|rm`: silences of alerts, kept by the control plane.

    jishi silence add --match service=catalog --for 1h -c "deploying catalog"
    jishi silence add --match 'alertname=~"High.*"' --for 30m      (matcher text as in alert rules)
    jishi silence list [--json]
    jishi silence rm ID

A silenced alert still changes state (and shows in `GET /v1/alerts`, marked silenced); its notifications are
held back while the silence lasts. Durations: seconds, or a number with ms, s, m, h or d.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from jishi.alerting.expr import parse_duration, parse_matchers
from jishi.cli._console import EXIT_CONFIG, call, fail, out

__all__ = ["app", "parse_match"]

app = typer.Typer(help="Silence alerts for a while (add, list, rm).", no_args_is_help=True)

_PLAIN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([^=~\"].*|)$")


def _url(ctx: typer.Context) -> str:
    return str(ctx.obj["control_plane"])


def parse_match(items: list[str]) -> str:
    """`--match` values as matcher text: `k=v` means k equals v; anything else is taken as rule matcher text."""
    parts = []
    for item in items:
        plain = _PLAIN.match(item)
        parts.append(f"{plain.group(1)}={json.dumps(plain.group(2).strip())}" if plain else item)
    text = ",".join(parts)
    parse_matchers(text)  # ValueError names what is wrong
    return text


@app.command("add")
def add(
    ctx: typer.Context,
    match: Annotated[list[str], typer.Option("--match", "-m", help="LABEL=VALUE (repeat for more); all must match")],
    duration: Annotated[str, typer.Option("--for", help="how long: 30m, 2h, 1d")] = "1h",
    comment: Annotated[str, typer.Option("--comment", "-c", help="why (shown with the silence)")] = "",
) -> None:
    """Silence the alerts whose labels match every --match, for --for."""
    try:
        matchers = parse_match(match)
        seconds = parse_duration(duration)
    except ValueError as exc:
        fail(str(exc), EXIT_CONFIG)
    if seconds <= 0:
        fail(f"--for must be positive, got {duration!r}", EXIT_CONFIG)
    who = os.environ.get("USER", "")
    spec = call(_url(ctx), lambda cp: cp.add_silence(matchers, duration=seconds, comment=comment, created_by=who))
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(spec.ends_at))
    out.print(f"silence {spec.id}: {escape(spec.matchers)} until {until}")


@app.command("list")
def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """The silences in force (and those not yet started)."""
    silences = call(_url(ctx), lambda cp: cp.list_silences())
    if as_json:
        out.print_json(json.dumps([s.model_dump() for s in silences]))
        return
    if not silences:
        out.print("no silences")
        return
    table = Table("ID", "MATCHERS", "ENDS", "LEFT", "BY", "COMMENT", box=None, header_style="bold")
    now = time.time()
    for s in silences:
        ends = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.ends_at))
        table.add_row(s.id, escape(s.matchers), ends, _left(s.ends_at - now), escape(s.created_by), escape(s.comment))
    out.print(table)


@app.command("rm")
def remove(ctx: typer.Context, silence_id: str) -> None:
    """End the silence SILENCE_ID now."""
    call(_url(ctx), lambda cp: cp.remove_silence(silence_id))
    out.print(f"silence {silence_id} removed")


def _left(seconds: float) -> str:
    if seconds <= 0:
        return "ended"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
