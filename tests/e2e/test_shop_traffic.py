"""The shop through the gateway: even balancing, orders priced by catalog, bad input, scaling under load."""

from __future__ import annotations

import socket
import time
from collections import Counter

import httpx
import pytest
from shop_harness import Load, ShopRun

pytestmark = pytest.mark.slow


def test_whoami_reaches_all_three_catalog_instances_evenly(shop: ShopRun):
    """30 GETs of /api/catalog/whoami reach all 3 catalog instances, max−min ≤ 1."""
    seen = Counter(shop.get("/api/catalog/whoami").json()["instance"] for _ in range(30))
    assert len(seen) == 3, seen
    assert max(seen.values()) - min(seen.values()) <= 1, seen
    assert all(name.startswith("catalog") for name in seen)


def test_order_placed_through_the_gateway_is_priced_by_catalog(shop: ShopRun):
    """POST /api/orders/orders returns an order priced by a catalog instance (orders calls it with the client SDK)."""
    reply = shop.get("/api/catalog/items/2").json()
    created = httpx.post(shop.gateway + "/api/orders/orders", json={"user_id": 1, "item_id": 2, "qty": 3}, timeout=10)
    assert created.status_code == 201, created.text
    order = created.json()
    assert order["unit_price_cents"] == reply["price_cents"]
    assert order["total_cents"] == 3 * reply["price_cents"]
    assert order["priced_by"].startswith("catalog") and order["served_by"].startswith("orders")
    assert order["user"]["id"] == 1
    listed = shop.get("/api/orders/orders").json()["orders"]
    assert [o["id"] for o in listed] == [order["id"]]
    unknown = httpx.post(shop.gateway + "/api/orders/orders", json={"user_id": 1, "item_id": 999})
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_item"


def test_malformed_request_gets_400_and_the_gateway_keeps_serving(shop: ShopRun):
    """Garbage on the gateway's socket gets a 400 with a JSON body; the next request is served."""
    with socket.create_connection(("127.0.0.1", shop.gateway_port), timeout=5) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    assert b"application/json" in data.lower()
    assert shop.get("/api/catalog/whoami").status_code == 200


def test_scale_up_to_five_then_down_to_two_under_load(shop: ShopRun):
    """`jishi scale catalog 5` → 5 distinct instances answer within 5 s; back to 2 under load → 0 failures."""
    code, out, err = shop.jishi("scale", "catalog", "5")
    assert code == 0, err
    assert "catalog: 3 → 5" in out
    started = time.monotonic()
    seen: set[str] = set()
    while len(seen) < 5 and time.monotonic() - started < 5.0:
        seen.add(shop.get("/api/catalog/whoami").json()["instance"])
    assert len(seen) == 5, f"{len(seen)} distinct instances after {time.monotonic() - started:.1f} s: {seen}"

    with Load(shop.gateway_port, "/api/catalog/whoami") as load:
        time.sleep(1.0)
        code, _, err = shop.jishi("scale", "catalog", "2")
        assert code == 0, err
        shop.wait_in_rotation({"catalog": 2}, timeout=15)
        deadline = time.monotonic() + 15
        while len([i for i in shop.status()["instances"] if i["service"] == "catalog"]) > 2:
            assert time.monotonic() < deadline, "scaled-down instances were not removed"
            time.sleep(0.1)
        time.sleep(1.0)
    assert load.failures == [], load.failures[:10]
    assert load.rate > 120, f"only {load.rate:.0f} req/s"
