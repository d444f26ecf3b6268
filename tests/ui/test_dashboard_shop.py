"""The dashboard in headless Chromium on the shop demo under a real `jishi up`: what it shows, and live changes.

The tests of this module share one shop (started once); each leaves it with every declared instance in rotation.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page
from screenshots import Screenshots
from shop_harness import DESIRED, ShopRun

pytestmark = pytest.mark.slow

ROWS = """() => [...document.querySelectorAll('[data-testid=instance-row]')].map(r => ({
    service: r.dataset.service, id: r.dataset.id, pid: r.dataset.pid, health: r.dataset.health}))"""
NODES = """() => [...document.querySelectorAll('[data-testid=topo-instance]')].map(n => ({
    service: n.dataset.service, id: n.dataset.id, health: n.dataset.health}))"""
PASSING = """([service, n]) => {
    const rows = [...document.querySelectorAll(`[data-testid=instance-row][data-service="${service}"]`)];
    const nodes = [...document.querySelectorAll(`[data-testid=topo-instance][data-service="${service}"]`)];
    return rows.length === n && nodes.length === n
        && rows.concat(nodes).every(e => e.dataset.health === 'passing');
}"""
# Records every state the page shows for one instance slot: its table row and its topology node.
OBSERVE = """([id, pid]) => {
    window.__seen = [];
    const look = () => {
        const row = document.querySelector(`[data-testid=instance-row][data-id="${id}"]`);
        const node = document.querySelector(`[data-testid=topo-instance][data-id="${id}"]`);
        const seen = {
            row: row ? `${row.dataset.health}:${row.dataset.pid === pid ? 'old' : 'new'}` : 'gone',
            node: node ? node.dataset.health : 'gone',
        };
        const last = window.__seen[window.__seen.length - 1];
        if (!last || last.row !== seen.row || last.node !== seen.node) window.__seen.push(seen);
    };
    look();
    new MutationObserver(look).observe(document.body, {subtree: true, childList: true, attributes: true});
}"""


def open_dashboard(page: Page, shop: ShopRun) -> None:
    page.goto(shop.control_plane + "/")
    assert page.url == shop.control_plane + "/ui/"
    for service, count in DESIRED.items():
        page.wait_for_function(PASSING, arg=[service, count])


def api_service(shop: ShopRun, name: str) -> dict[str, Any]:
    reply = httpx.get(f"{shop.control_plane}/v1/services/{name}", timeout=5.0)
    reply.raise_for_status()
    doc: dict[str, Any] = reply.json()
    return doc


def test_dashboard_shows_the_shops_services_and_instances(page: Page, shop: ShopRun, shots: Screenshots) -> None:
    """Every service and instance the API reports is on the page — table, cards and topology — all passing."""
    open_dashboard(page, shop)
    api = shop.status()
    want = {(i["service"], i["id"], str(i["pid"])) for i in api["instances"]}
    assert {(r["service"], r["id"], r["pid"]) for r in page.evaluate(ROWS)} == want
    assert {(n["service"], n["id"], n["health"]) for n in page.evaluate(NODES)} == {
        (s, i, "passing") for s, i, _ in want
    }
    cards = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('[data-testid=service-card]')]
            .map(c => [c.dataset.name, [Number(c.dataset.desired), Number(c.dataset.live)]]))"""
    )
    assert cards == {name: [count, count] for name, count in DESIRED.items()}
    routes = page.eval_on_selector_all("[data-testid=route-row]", "rows => rows.map(r => r.dataset.name)")
    assert sorted(routes) == sorted(r["name"] for r in api["routes"])
    assert page.locator("[data-testid=topo-gateway]").count() == len(api["gateways"]) == 1
    assert page.text_content("[data-testid=cluster-status]") in ("healthy", "degraded")
    for panel in ("panel-alerts", "panel-events"):  # real content, or "not available" — never an empty panel
        assert page.text_content(f"[data-testid={panel}] .body"), panel
    shots(page, "shop")
    page.emulate_media(color_scheme="dark")
    shots(page, "shop-dark")


def test_killed_instance_turns_red_and_back_green_without_reload(page: Page, shop: ShopRun, shots: Screenshots) -> None:
    """SIGKILL of an instance: its row and node go red (or away) and a passing one takes its place, live."""
    open_dashboard(page, shop)
    victim = next(i for i in shop.status()["instances"] if i["service"] == "catalog")
    page.evaluate("window.__sameDocument = 'yes'")
    page.evaluate(OBSERVE, [victim["id"], str(victim["pid"])])
    shots(page, "before")

    os.kill(victim["pid"], signal.SIGKILL)
    page.wait_for_function("() => window.__seen.some(s => s.row !== 'passing:old')")
    shots(page, "killed")
    page.wait_for_function(PASSING, arg=["catalog", DESIRED["catalog"]])
    page.wait_for_function(
        "pid => [...document.querySelectorAll('[data-testid=instance-row]')].every(r => r.dataset.pid !== pid)",
        arg=str(victim["pid"]),
    )
    shots(page, "recovered")

    seen = page.evaluate("window.__seen")
    assert any(s["row"] == "gone" or s["row"].startswith("critical") for s in seen), seen
    assert any(s["node"] in ("gone", "critical") for s in seen), seen
    assert page.evaluate("window.__sameDocument") == "yes", "the page was reloaded"
    assert victim["pid"] not in {i["pid"] for i in shop.in_rotation("catalog")}
    assert len(shop.in_rotation("catalog")) == DESIRED["catalog"]


def test_scale_action_changes_the_instance_count(page: Page, shop: ShopRun, shots: Screenshots) -> None:
    """Scaling users to 3 and back to 2 from the page: the API and the page agree on the instances each time."""
    open_dashboard(page, shop)
    for count in (3, DESIRED["users"]):
        page.fill("[data-testid=scale-input-users]", str(count))
        page.click("[data-testid=scale-button-users]")
        page.wait_for_function(
            "n => document.querySelector('[data-testid=toast]').textContent.includes(n)", arg=f"{count}"
        )
        page.wait_for_function(PASSING, arg=["users", count])
        page.wait_for_function(
            "n => document.querySelector('[data-testid=service-card][data-name=users]').dataset.live === n",
            arg=str(count),
        )
        shots(page, f"users-{count}")
        assert api_service(shop, "users")["instances"] == count
        shop.wait_in_rotation({"users": count}, timeout=10)
        on_page = {r["id"] for r in page.evaluate(ROWS) if r["service"] == "users"}
        assert on_page == {i["id"] for i in shop.in_rotation("users")}
    users = DESIRED["users"]
    assert page.text_content("[data-testid=service-count-users]") == f"{users}/{users} in rotation"


def test_restart_action_replaces_the_process(page: Page, shop: ShopRun, shots: Screenshots) -> None:
    """Restart on an instance's row: the same slot comes back passing with a new pid, in the page and the API."""
    open_dashboard(page, shop)
    victim = next(i for i in shop.status()["instances"] if i["service"] == "users")
    page.click(f"[data-testid=restart-users-{victim['id']}]")
    page.wait_for_function("() => document.querySelector('[data-testid=toast]').textContent.includes('restarting')")
    row = f"[data-testid=instance-row][data-id={victim['id']}]"
    page.wait_for_function(
        "([sel, pid]) => { const r = document.querySelector(sel); return r && r.dataset.pid !== pid; }",
        arg=[row, str(victim["pid"])],
    )
    page.wait_for_function(PASSING, arg=["users", DESIRED["users"]])
    shots(page, "restarted")
    again = {i["id"]: i for i in shop.in_rotation("users")}
    assert again[victim["id"]]["pid"] != victim["pid"]
    assert page.get_attribute(row, "data-pid") == str(again[victim["id"]]["pid"])
