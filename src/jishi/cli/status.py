"""What `jishi status` and `jishi routes` show: rich tables for people, JSON for scripts.

Everything is computed from one `ClusterStatus` (read at one revision) and `now` (unix seconds), so the
rendering is a pure function that tests can call directly. Colours: passing green, warning yellow, critical red,
draining grey; a service is green with every wanted instance in rotation, yellow with some, red with none.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from jishi.registry.model import Health, Instance, Route
from jishi.registry.registry import ClusterStatus

__all__ = [
    "HEALTH_STYLE",
    "format_duration",
    "route_rows",
    "routes_table",
    "status_json",
    "status_view",
    "summary_line",
]

HEALTH_STYLE = {Health.PASSING: "green", Health.WARNING: "yellow", Health.CRITICAL: "red"}


def format_duration(seconds: float) -> str:
    """A short human uptime: 42s, 3m05s, 2h07m, 3d04h."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _instance_json(inst: Instance) -> dict[str, Any]:
    return {
        "service": inst.service,
        "id": inst.id,
        "address": inst.address,
        "port": inst.port,
        "url": f"http://{inst.address}:{inst.port}",
        "pid": inst.pid,
        "health": inst.health.value,
        "in_rotation": inst.in_rotation,
        "draining": inst.draining,
        "restarts": inst.restarts,
        "started_at": inst.started_at,
        "agent": inst.agent,
    }


def status_json(status: ClusterStatus) -> dict[str, Any]:
    """The `status --json` document: every instance with service, id, address, port, pid and health."""
    instances = sorted(status.instances, key=lambda i: (i.service, i.id))
    services = []
    for spec in sorted(status.services, key=lambda s: s.name):
        mine = [i for i in instances if i.service == spec.name]
        services.append(
            {
                "name": spec.name,
                "desired": spec.instances,
                "running": len(mine),
                "in_rotation": sum(i.in_rotation for i in mine),
            }
        )
    return {
        "revision": status.revision,
        "gateways": [g.url for g in status.gateways],
        "gateway_members": [g.model_dump(mode="json") for g in status.gateways],
        "agents": [a.model_dump(mode="json") for a in status.agents],
        "services": services,
        "instances": [_instance_json(i) for i in instances],
        "routes": [r.model_dump(mode="json") for r in status.routes],
    }


def _service_style(live: int, want: int) -> str:
    """green: all wanted instances in rotation; yellow: some; red: none of a service that wants some."""
    if live >= want:
        return "green" if want else "bright_black"
    return "yellow" if live else "red"


def _health_text(inst: Instance) -> Text:
    style = "bright_black" if inst.draining else HEALTH_STYLE[inst.health]
    health = Text("● ", style=style)
    health.append(inst.health.value, style=HEALTH_STYLE[inst.health])
    if inst.draining:
        health.append(" (draining)", style="bright_black")
    return health


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def summary_line(status: ClusterStatus) -> Text:
    """One line for the whole cluster: healthy / degraded / critical, and the counts behind it."""
    desired = {s.name: s.instances for s in status.services}
    live_by: dict[str, int] = {}
    for inst in status.instances:
        live_by[inst.service] = live_by.get(inst.service, 0) + inst.in_rotation
    styles = [_service_style(live_by.get(name, 0), want) for name, want in desired.items()]
    if "red" in styles or not status.gateways:
        word, style = "critical", "bold white on red"
    elif "yellow" in styles:
        word, style = "degraded", "bold black on yellow"
    else:
        word, style = "healthy", "bold white on green"
    line = Text()
    line.append(f" {word} ", style=style)
    live = sum(live_by.values())
    line.append(f"  {_count(len(desired), 'service')}, {live}/{len(status.instances)} instances in rotation, ")
    line.append(f"{_count(len(status.routes), 'route')}, ")
    line.append(_count(len(status.gateways), "gateway"), style="" if status.gateways else "red")
    line.append(f", {_count(len(status.agents), 'agent')} — revision {status.revision}")
    return line


def alerts_table(alerts: list[dict[str, Any]], now: float) -> Table | Text:
    """Pending and firing alerts (from `GET /v1/alerts`), firing first; a dim line when there are none."""
    if not alerts:
        return Text("no alerts firing", style="dim green")
    table = Table(title="[bold]alerts[/]", title_justify="left")
    for column in ("state", "alert", "labels", "since", "message"):
        table.add_column(column)
    for alert in sorted(alerts, key=lambda a: (a.get("state") != "firing", str(a.get("name")))):
        state = str(alert.get("state", "?"))
        labels = ", ".join(f"{k}={v}" for k, v in sorted((alert.get("labels") or {}).items()) if k != "alertname")
        since = alert.get("since")
        table.add_row(
            Text(state, style="bold red" if state == "firing" else "yellow"),
            str(alert.get("name", "?")),
            labels,
            format_duration(now - float(since)) if isinstance(since, int | float) else "-",
            str(alert.get("message", "")),
        )
    return table


def status_view(status: ClusterStatus, now: float, alerts: list[dict[str, Any]] | None = None) -> Group:
    """A summary line, services → instances, then routes, then gateways and agents, then alerts (when known), as
    rich renderables."""
    parts: list[Any] = [summary_line(status)]
    by_service: dict[str, list[Instance]] = {}
    for inst in status.instances:
        by_service.setdefault(inst.service, []).append(inst)
    names = sorted({s.name for s in status.services} | set(by_service))
    desired = {s.name: s.instances for s in status.services}
    if not names:
        parts.append(Text("no services declared yet — apply a jishi.yaml with `jishi up -f FILE`", style="dim"))
    for name in names:
        mine = sorted(by_service.get(name, []), key=lambda i: i.id)
        live = sum(i.in_rotation for i in mine)
        want = desired.get(name)
        count = want if want is not None else len(mine)
        title = f"[bold]{name}[/]  [{_service_style(live, count)}]{live}/{count}[/] in rotation"
        if want is None:
            title += "  [yellow](not declared: registered from outside)[/]"
        table = Table(title=title, title_justify="left", expand=False)
        for column in ("instance", "address", "pid", "health", "restarts", "uptime"):
            table.add_column(column, justify="right" if column in ("pid", "restarts", "uptime") else "left")
        for inst in mine:
            uptime = format_duration(now - inst.started_at) if inst.started_at else "-"
            pid = str(inst.pid) if inst.pid is not None else "-"
            restarts = Text(str(inst.restarts), style="yellow" if inst.restarts else "")
            row_style = "bright_black" if inst.draining else ""
            table.add_row(
                inst.id, f"{inst.address}:{inst.port}", pid, _health_text(inst), restarts, uptime, style=row_style
            )
        if not mine:
            table.add_row(Text("no instances yet", style="dim"), "", "", "", "", "")
        parts.append(table)
    parts.append(routes_table(status.routes, status.instances))
    members = Table(title="[bold]platform[/]", title_justify="left")
    for column in ("kind", "id", "url / host", "pid", "uptime"):
        members.add_column(column)
    for g in status.gateways:
        members.add_row("gateway", g.id, g.url, str(g.pid), format_duration(now - g.started_at))
    for a in status.agents:
        members.add_row("agent", a.id, a.host, str(a.pid), format_duration(now - a.started_at))
    if not status.gateways:
        members.add_row(Text("gateway", style="red"), Text("none running", style="red"), "", "", "")
    parts.append(members)
    if alerts is not None:
        parts.append(alerts_table(alerts, now))
    return Group(*parts)


def route_rows(routes: list[Route], instances: list[Instance]) -> list[dict[str, Any]]:
    """One row per route: where it matches, its backends, and how many instances serve it right now."""
    rows = []
    for route in sorted(routes, key=lambda r: (r.host or "", r.prefix, r.name)):
        serving = sum(1 for i in instances if i.in_rotation and any(b.service == i.service for b in route.backends))
        rows.append(
            {
                "name": route.name,
                "host": route.host or "*",
                "prefix": route.prefix,
                "strip_prefix": route.strip_prefix,
                "backends": ", ".join(
                    f"{b.service}" + (f"×{b.weight}" if b.weight != 1 else "") + (" (backup)" if b.backup else "")
                    for b in route.backends
                ),
                "in_rotation": serving,
                "timeouts": f"{route.connect_timeout:g}s/{route.read_timeout:g}s",
                "retries": route.retries,
            }
        )
    return rows


def routes_table(routes: list[Route], instances: list[Instance]) -> Table:
    table = Table(title="[bold]routes[/]", title_justify="left")
    for column in ("name", "host", "prefix", "strip", "backends", "live", "connect/read", "retries"):
        table.add_column(column, no_wrap=column in ("prefix", "connect/read"))
    for row in route_rows(routes, instances):
        serving = Text(str(row["in_rotation"]), style="green" if row["in_rotation"] else "red")
        table.add_row(
            row["name"],
            row["host"],
            row["prefix"],
            "yes" if row["strip_prefix"] else "no",
            row["backends"],
            serving,
            row["timeouts"],
            str(row["retries"]),
        )
    if not routes:
        table.add_row(Text("no routes", style="dim"), "", "", "", "", "", "", "")
    return table
