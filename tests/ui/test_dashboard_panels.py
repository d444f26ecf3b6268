"""The dashboard's panels in headless Chromium against a scripted control plane (Playwright request routing).

No server runs: every request of the page is answered here — the bundled assets from the package, and the /v1/
documents each test chooses — so each panel can be checked against exact data, including endpoints that fail.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, Route
from screenshots import Screenshots

from jishi.server.ui import ASSETS, asset

BASE = "http://jishi.test"
NOW = 1_800_000_000.0

STATUS = {
    "revision": 42,
    "services": [{"name": "api", "command": ["x"], "instances": 2}],
    "instances": [
        {
            "id": "api-0", "service": "api", "address": "127.0.0.1", "port": 9000, "pid": 100, "agent": "a1",
            "health": "passing", "health_output": "", "draining": False, "started_at": NOW - 3725, "restarts": 0,
        },
        {
            "id": "api-1", "service": "api", "address": "127.0.0.1", "port": 9001, "pid": 101, "agent": "a1",
            "health": "critical", "health_output": "connection refused", "draining": False, "started_at": NOW - 5,
            "restarts": 4,
        },
    ],
    "routes": [
        {
            "name": "api", "prefix": "/api", "host": None, "strip_prefix": True,
            "backends": [{"service": "api", "weight": 1, "backup": False}],
            "connect_timeout": 1.0, "read_timeout": 30.0, "retries": 2, "timeout": None, "retry": None,
            "lb": {"policy": "maglev", "hash_on": "header:x-user", "slow_start": 0.0},
            "rate_limit": {"algorithm": "gcra", "requests": 100, "period": 1.0, "key": "ip", "redis": None,
                           "shadow": False},
            "bulkhead": None, "concurrency": None, "breaker": {"window": "count"},
        }
    ],
    "gateways": [{"id": "gw-1", "url": "http://127.0.0.1:8080", "pid": 5, "started_at": NOW - 60}],
    "agents": [{"id": "a1", "host": "box", "pid": 6, "started_at": NOW - 60}],
}  # fmt: skip
ROW = {"requests": 500, "errors": 50, "rps": 12.5, "error_ratio": 0.1, "p50_ms": 3.0, "p99_ms": 45.0,
       "status": {"2xx": 450, "3xx": 0, "4xx": 0, "5xx": 50}}  # fmt: skip
ALERTS = {
    "alerts": [{"name": "HighErrorRate", "state": "firing", "since": NOW - 30, "labels": {"service": "api"},
                "message": "api answers 10% errors", "value": 0.1}],
    "silences": [],
}  # fmt: skip
HOSTILE = 'exit code 1 <img src=x onerror="window.__owned = 1">'  # text from processes is shown, never parsed
EVENTS = [
    {"id": "e1", "time": NOW - 20, "kind": "instance.exited", "subject": "api/api-1", "reason": HOSTILE,
     "level": "warning", "labels": {}},
    {"id": "e2", "time": NOW - 10, "kind": "alert.firing", "subject": "api", "reason": "HighErrorRate",
     "level": "error", "labels": {}},
]  # fmt: skip


class FakeControlPlane:
    """Answers the page's requests: assets from the package, /v1/ from `answers` (path → status, JSON)."""

    def __init__(self, answers: dict[str, Callable[[], tuple[int, Any]]]) -> None:
        self.answers = answers
        self.posts: list[tuple[str, Any]] = []

    def __call__(self, route: Route) -> None:
        request = route.request
        path = request.url.removeprefix(BASE).split("?")[0]
        if path.startswith("/ui/") and (path[4:] or "index.html") in ASSETS:
            name = path[4:] or "index.html"
            route.fulfill(status=200, content_type=ASSETS[name], body=asset(name))
            return
        if request.method == "POST":
            self.posts.append((path, request.post_data_json if request.post_data else None))
        answer = self.answers.get(f"{request.method} {path}")
        if answer is None:
            route.fulfill(status=404, content_type="application/json", body=_error(f"{request.method} {path}"))
            return
        status, doc = answer()
        route.fulfill(status=status, content_type="application/json", body=json.dumps(doc))


def _error(what: str) -> str:
    return json.dumps({"error": {"code": "not_found", "message": f"{what}: Not Found"}})


def stats_source() -> Callable[[], tuple[int, Any]]:
    ticks = iter(range(10_000))

    def stats() -> tuple[int, Any]:
        return 200, {
            "time": NOW + next(ticks),
            "window": 10.0,
            "gateways": [{"id": "gw-1", "reported_at": NOW, "connections": 3, "workers": 1}],
            "routes": {"api": ROW},
            "services": {"api": ROW},
            "instances": {"api/api-0": ROW},
            "policies": {"api": {"breaker": "open", "rate_limited": 3, "shed": 0, "retries": 7, "ejected": ["api-1"]}},
        }

    return stats


def open_page(page: Page, answers: dict[str, Callable[[], tuple[int, Any]]]) -> FakeControlPlane:
    cp = FakeControlPlane(answers)
    page.route(f"{BASE}/**", cp)
    page.goto(f"{BASE}/ui/")
    return cp


@pytest.fixture
def full(page: Page) -> FakeControlPlane:
    return open_page(
        page,
        {
            "GET /v1/status": lambda: (200, STATUS),
            "GET /v1/stats": stats_source(),
            "GET /v1/alerts": lambda: (200, ALERTS),
            "GET /v1/events": lambda: (200, {"events": EVENTS}),
            "POST /v1/instances/api/api-0/restart": lambda: (202, {"restarting": "api-0"}),
        },
    )


def test_charts_draw_the_stats_history(page: Page, full: FakeControlPlane, shots: Screenshots) -> None:
    """Each /v1/stats poll adds a point: the rate, error and p99 charts draw lines with the latest values."""
    page.wait_for_function("() => window.jishiDashboard.ticks >= 3")
    for chart, label in (("rps", "req/s 12.5"), ("errors", "errors 10%"), ("p99", "p99 45 ms")):
        svg = page.locator(f"[data-testid=chart-{chart}-api]")
        assert svg.locator("path.line").count() == 1, chart
        assert label in svg.text_content(), (chart, svg.text_content())
    assert page.text_content("[data-testid=summary-rps]") == "12.5"
    shots(page, "charts")


def test_routes_alerts_events_and_topology_show_the_documents(page: Page, full: FakeControlPlane) -> None:
    """Breaker state, limits and ejections per route; the firing alert; events newest first (as text); red nodes."""
    page.wait_for_function("() => window.jishiDashboard.ticks >= 1")
    row = page.locator("[data-testid=route-row][data-name=api]")
    assert row.locator("[data-testid=breaker]").text_content() == "open"
    text = row.text_content() or ""
    assert "maglev, on header:x-user" in text and "100/1s gcra by ip" in text and "3 limited" in text
    assert "api-1" in text and "7 done" in text
    alert = page.locator("[data-testid=alert]")
    assert alert.count() == 1 and alert.get_attribute("data-state") == "firing"
    assert "api answers 10% errors" in (alert.text_content() or "")
    kinds = page.eval_on_selector_all("[data-testid=event]", "es => es.map(e => e.dataset.kind)")
    assert kinds == ["alert.firing", "instance.exited"]
    assert HOSTILE in (page.locator("[data-testid=event][data-kind='instance.exited']").text_content() or "")
    assert page.locator("#events img").count() == 0 and page.evaluate("window.__owned") is None
    health = page.eval_on_selector_all("[data-testid=topo-instance]", "ns => ns.map(n => n.dataset.health)")
    assert health == ["passing", "critical"]
    assert page.get_attribute("[data-testid=topo-route]", "data-health") == "critical"  # breaker open
    assert "3 connections, 1 worker(s)" in (page.text_content("[data-testid=topo-gateway] title") or "")
    assert page.get_attribute("[data-testid=topo-service]", "data-health") == "warning"  # 1 of 2 in rotation
    assert page.text_content("[data-testid=cluster-status]") == "degraded"
    assert page.get_attribute("[data-testid=instance-row][data-id=api-1]", "data-health") == "critical"


def test_restart_button_posts_the_restart(page: Page, full: FakeControlPlane) -> None:
    """The Restart button of an instance POSTs /v1/instances/{service}/{id}/restart and says so."""
    page.click("[data-testid=restart-api-api-0]")
    page.wait_for_function("() => document.querySelector('[data-testid=toast]').textContent.includes('restarting')")
    assert ("/v1/instances/api/api-0/restart", None) in full.posts


def test_panels_say_not_available_when_endpoints_are_missing(page: Page, shots: Screenshots) -> None:
    """With only /v1/status (an older control plane), charts, alerts and events say "not available"."""
    open_page(page, {"GET /v1/status": lambda: (200, STATUS)})
    page.wait_for_function("() => window.jishiDashboard.ticks >= 1")
    for panel in ("panel-services", "panel-alerts", "panel-events"):
        assert "not available" in (page.text_content(f"[data-testid={panel}] [data-testid=not-available]") or "")
    assert page.locator("[data-testid=instance-row]").count() == 2
    assert page.text_content("[data-testid=summary-rps]") == "–"
    page.click("[data-testid=restart-api-api-0]")
    page.wait_for_function("() => document.querySelector('[data-testid=toast]').textContent.includes('not available')")
    shots(page, "not-available")


def test_unreachable_control_plane_is_said_in_the_header(page: Page) -> None:
    """When /v1/status fails, the header says "unreachable" with the reason, and the page keeps polling."""
    answers: dict[str, Callable[[], tuple[int, Any]]] = {
        "GET /v1/status": lambda: (503, {"error": {"code": "unavailable", "message": "store closed"}})
    }
    open_page(page, answers)
    page.wait_for_function("() => document.querySelector('[data-testid=cluster-status]').textContent === 'unreachable'")
    assert "store closed" in (page.text_content("[data-testid=updated]") or "")
    answers["GET /v1/status"] = lambda: (200, STATUS)
    page.wait_for_function("() => document.querySelector('[data-testid=cluster-status]').textContent === 'degraded'")
