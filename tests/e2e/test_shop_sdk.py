"""The shop's orders service calls catalog through the jishi client SDK: no gateway hop, failover when instances die."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
from collections import Counter

import httpx
import pytest
from shop_harness import Load, ShopRun

pytestmark = pytest.mark.slow


class OrderLoad(Load):
    """`threads` clients POSTing orders through the gateway to orders, together about `rate` orders/s."""

    def __init__(self, gateway_port: int, rate: float = 40.0, threads: int = 4) -> None:
        super().__init__(gateway_port, "/api/orders/orders", rate, threads, timeout=10.0)
        self.created: list[dict[str, object]] = []

    def _request(self, conn: http.client.HTTPConnection, n: int, i: int) -> None:
        order = {"user_id": 1 + (n + i) % 3, "item_id": 1 + i % 5, "qty": 1 + n}
        conn.request("POST", self.path, body=json.dumps(order), headers={"Content-Type": "application/json"})

    def _accept(self, status: int, body: bytes) -> bool:
        if status != 201:
            return False
        with self.lock:
            self.created.append(json.loads(body))
        return True


def wait_catalog_back(shop: ShopRun, gone: set[int], timeout: float = 20.0) -> None:
    """Until 3 catalog instances are in rotation again, none of them a process in `gone`."""
    deadline = time.monotonic() + timeout
    while True:
        catalog = shop.in_rotation("catalog")
        if len(catalog) == 3 and not gone & {i["pid"] for i in catalog}:
            return
        assert time.monotonic() < deadline, f"catalog not back to 3 new instances: {catalog}\n{shop.logs()}"
        time.sleep(0.05)


def test_orders_price_through_the_sdk_even_with_the_catalog_route_gone(shop: ShopRun):
    """With the gateway's catalog route deleted, orders still get priced: orders reaches catalog directly."""
    assert httpx.delete(f"{shop.control_plane}/v1/routes/catalog", timeout=5).status_code == 204
    deadline = time.monotonic() + 5
    while shop.get("/api/catalog/items/1").status_code != 404:  # the gateway has dropped the route
        assert time.monotonic() < deadline, "the gateway still routes /api/catalog after the route was deleted"
        time.sleep(0.05)
    priced_by: Counter[str] = Counter()
    for _ in range(9):
        reply = httpx.post(shop.gateway + "/api/orders/orders", json={"user_id": 2, "item_id": 3}, timeout=10)
        assert reply.status_code == 201, reply.text
        priced_by[reply.json()["priced_by"]] += 1
    assert len(priced_by) == 3, priced_by  # each orders instance's client balances over every catalog instance


def test_killing_catalog_instances_while_orders_are_placed_fails_no_order(shop: ShopRun):
    """kill -9 of 2 of 3 catalog instances, then of the last original one, at ~40 orders/s: 0 failed orders."""
    with OrderLoad(shop.gateway_port) as load:
        time.sleep(1.0)
        first = shop.in_rotation("catalog")
        victims = {i["pid"] for i in first[:2]}
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        wait_catalog_back(shop, victims)
        time.sleep(0.5)
        last = first[2]["pid"]
        os.kill(last, signal.SIGKILL)
        wait_catalog_back(shop, victims | {last})
        time.sleep(1.0)  # orders priced by the restarted instances
    assert load.failures == [], load.failures[:10]
    assert len(load.created) > 60, f"only {len(load.created)} orders placed"
    listed = httpx.get(shop.gateway + "/api/orders/orders", timeout=10).json()["orders"]
    assert sorted(o["id"] for o in listed) == sorted(o["id"] for o in load.created)  # each order stored once
    for order in load.created:
        assert order["total_cents"] == order["unit_price_cents"] * order["qty"]  # type: ignore[operator]
    assert len({o["priced_by"] for o in load.created}) >= 3  # every slot priced orders
