"""`jishi status` rendering as pure functions of a ClusterStatus."""

from __future__ import annotations

import re

from rich.console import Console

from jishi.cli.status import format_duration, route_rows, status_json, status_view, summary_line
from jishi.registry import ClusterStatus
from jishi.registry.model import GatewayInfo, Health, Instance, Route, RouteBackend, ServiceSpec

NOW = 1_000_000.0


def cluster() -> ClusterStatus:
    def inst(n: int, health: Health, draining: bool = False) -> Instance:
        return Instance(
            id=f"api-{n}",
            service="api",
            port=9000 + n,
            pid=100 + n,
            health=health,
            draining=draining,
            started_at=NOW - 3725,
            restarts=n,
        )

    return ClusterStatus(
        revision=7,
        services=[ServiceSpec(name="api", command=["x"], instances=3)],
        instances=[inst(0, Health.PASSING), inst(1, Health.CRITICAL), inst(2, Health.PASSING, draining=True)],
        routes=[Route(name="api", prefix="/api", backends=[RouteBackend(service="api", weight=2, backup=True)])],
        gateways=[GatewayInfo(id="gw", url="http://127.0.0.1:8080", pid=5, started_at=NOW - 10)],
        agents=[],
    )


def test_format_duration():
    """Uptimes read as 42s, 3m05s, 2h07m, 3d04h."""
    assert [format_duration(s) for s in (42, 185, 7620, 273600, -5)] == ["42s", "3m05s", "2h07m", "3d04h", "0s"]


def test_status_json_counts_rotation_and_lists_gateway_urls():
    """Only passing/warning, non-draining instances count as in rotation; gateway URLs are listed."""
    doc = status_json(cluster())
    assert doc["gateways"] == ["http://127.0.0.1:8080"]
    assert doc["services"] == [{"name": "api", "desired": 3, "running": 3, "in_rotation": 1}]
    assert [(i["id"], i["in_rotation"]) for i in doc["instances"]] == [
        ("api-0", True),
        ("api-1", False),
        ("api-2", False),
    ]
    assert doc["instances"][0]["url"] == "http://127.0.0.1:9000"


def test_route_rows_describe_backends():
    """A route row shows weight and backup of its backends and the serving count."""
    (row,) = route_rows(cluster().routes, cluster().instances)
    assert row["backends"] == "api×2 (backup)" and row["in_rotation"] == 1 and row["host"] == "*"


def test_status_view_renders_health_draining_and_uptime():
    """The human view shows each instance's health (draining marked), restarts and uptime."""
    console = Console(width=200, record=True)
    console.print(status_view(cluster(), NOW))
    text = console.export_text()
    assert "api  1/3 in rotation" in text
    assert "critical" in text and "passing (draining)" in text and "1h02m" in text
    assert "http://127.0.0.1:8080" in text


def test_summary_line_grades_the_cluster():
    """The first line says healthy, degraded (some instances missing) or critical (a service with none, no gateway)."""
    assert summary_line(cluster()).plain.startswith(" degraded ")
    assert (
        "3 services" not in summary_line(cluster()).plain
        and "1/3 instances in rotation" in summary_line(cluster()).plain
    )
    healthy = cluster().model_copy(
        update={
            "instances": [
                i.model_copy(update={"health": Health.PASSING, "draining": False}) for i in cluster().instances
            ]
        }
    )
    assert summary_line(healthy).plain.startswith(" healthy ")
    no_gateway = healthy.model_copy(update={"gateways": []})
    assert summary_line(no_gateway).plain.startswith(" critical ")
    nothing_live = cluster().model_copy(update={"instances": []})
    assert summary_line(nothing_live).plain.startswith(" critical ")


def test_status_colours_health_and_counts():
    """In a colour terminal: critical is red, passing green, and a service short of instances is yellow."""
    console = Console(width=200, record=True, force_terminal=True, color_system="standard")
    console.print(status_view(cluster(), NOW))
    ansi = console.export_text(styles=True)
    assert "\x1b[31mcritical" in ansi and "\x1b[32mpassing" in ansi  # red, green
    assert re.search(r"\x1b\[[0-9;]*33m1/3", ansi)  # yellow: the service's in-rotation count, in its title


def test_status_view_lists_firing_alerts_first():
    """With alerts known, the view ends with them, firing (red) before pending, with labels and age; none → a line."""
    alerts = [
        {"name": "HighErrorRate", "state": "pending", "since": NOW - 30, "labels": {"route": "api"}, "message": "m1"},
        {"name": "NoHealthyInstance", "state": "firing", "since": NOW - 125, "labels": {"service": "api"},
         "message": "api has no healthy instance"},
    ]  # fmt: skip
    console = Console(width=200, record=True)
    console.print(status_view(cluster(), NOW, alerts))
    text = console.export_text()
    assert text.index("NoHealthyInstance") < text.index("HighErrorRate")
    assert "service=api" in text and "2m05s" in text and "api has no healthy instance" in text
    quiet = Console(width=200, record=True)
    quiet.print(status_view(cluster(), NOW, []))
    assert "no alerts firing" in quiet.export_text()
