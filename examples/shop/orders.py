"""The shop's orders, in their own SQLite database ($DB_PATH). Prices come from the catalog service and users
from the users service — never their databases. Both are called directly, instance to instance, through the
jishi client SDK (`jishi.client.SyncClient`): it follows the instances from the control plane
($JISHI_CONTROL_PLANE), balances over them, keeps a breaker per instance, and fails over — a GET that fails on
one instance (refused, reset, 5xx, timed out) is tried again on another, so an order survives catalog instances
dying under it. A copy of the instances is kept in $DIRECTORY_CACHE (one file per orders instance), so orders
keeps calling them while the control plane is down, even after a restart.

    GET  /orders          every order
    GET  /orders/{id}     one order, or 404
    POST /orders          {"user_id": 1, "item_id": 2, "qty": 3} → 201 with the priced order
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from shophttp import App, HttpError, Reply, Request, log, open_db

from jishi.client import ServiceCallError, ServiceUnavailable, SyncClient
from jishi.core.resilience import BreakerConfig, RetryBudget, RetryPolicy

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL,
    item_id INTEGER NOT NULL,
    item_name TEXT NOT NULL,
    qty INTEGER NOT NULL CHECK (qty > 0),
    unit_price_cents INTEGER NOT NULL,
    total_cents INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""
CONTROL_PLANE = os.environ.get("JISHI_CONTROL_PLANE", "http://127.0.0.1:8500")
COLUMNS = "id, user_id, item_id, item_name, qty, unit_price_cents, total_cents, created_at"
clients: dict[str, SyncClient] = {}  # service → its client, made at start (`connect`)


def seed(conn: sqlite3.Connection) -> None:
    """Orders start empty."""


app = App("orders")
db = open_db(os.environ.get("DB_PATH", "orders.sqlite3"), SCHEMA, seed)


@app.route("GET", r"/orders")
def list_orders(req: Request) -> Reply:
    rows = db().execute(f"SELECT {COLUMNS} FROM orders ORDER BY id").fetchall()
    return 200, {"orders": [dict(row) for row in rows]}


@app.route("GET", r"/orders/(\d+)")
def get_order(req: Request, order_id: str) -> Reply:
    row = db().execute(f"SELECT {COLUMNS} FROM orders WHERE id = ?", (int(order_id),)).fetchone()
    if row is None:
        raise HttpError(404, "not_found", f"no order {order_id}")
    return 200, dict(row)


def _positive_int(body: dict[str, object], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise HttpError(
            400,
            "invalid_order",
            f'{name} must be a positive whole number; send {{"user_id": 1, "item_id": 2, "qty": 1}}',
        )
    return value


def connect(service: str) -> SyncClient:
    """A client for `service`: failover over its instances, a breaker on each, retries within a budget."""
    cache = os.environ.get("DIRECTORY_CACHE")
    return SyncClient(
        CONTROL_PLANE,
        service,
        cache_path=f"{cache}.{app.instance}.{service}.json" if cache else None,
        strategy="failover",
        timeout=2.0,  # per try
        retry=RetryPolicy(max_attempts=3, base=0.01, cap=0.1),  # up to 3 instances per call
        budget=RetryBudget(50.0, 5),  # retries ≤ half the calls in flight, at least 5 at once
        breaker=BreakerConfig(window_size=20, minimum_calls=5, wait_in_open=5.0, permitted_calls_in_half_open=2),
    )


def _fetch(service: str, path: str, what: str) -> dict[str, Any]:
    client = clients[service]
    try:
        resp = client.get(path)
    except ServiceUnavailable as exc:
        raise HttpError(503, "upstream_unavailable", f"no {client.service} instance for GET {path}: {exc}") from exc
    except ServiceCallError as exc:
        raise HttpError(502, "upstream_error", f"GET {client.service}{path} failed on every try: {exc}") from exc
    if resp.status_code == 404:
        raise HttpError(422, f"unknown_{what}", f"there is no such {what} ({client.service}{path})")
    body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else None
    if resp.status_code != 200 or not isinstance(body, dict):
        raise HttpError(502, "upstream_error", f"GET {client.service}{path} answered {resp.status_code}: {resp.text}")
    return body


@app.route("POST", r"/orders")
def create_order(req: Request) -> Reply:
    body = req.json()
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_order", 'send {"user_id": 1, "item_id": 2, "qty": 1}')
    user_id, item_id = _positive_int(body, "user_id"), _positive_int(body, "item_id")
    qty = _positive_int(body, "qty") if "qty" in body else 1
    user = _fetch("users", f"/users/{user_id}", "user")
    item = _fetch("catalog", f"/items/{item_id}", "item")
    unit = int(item["price_cents"])
    cur = db().execute(
        "INSERT INTO orders (user_id, item_id, item_name, qty, unit_price_cents, total_cents, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, item_id, item["name"], qty, unit, unit * qty, time.time()),
    )
    order = dict(db().execute(f"SELECT {COLUMNS} FROM orders WHERE id = ?", (cur.lastrowid,)).fetchone())
    return 201, {**order, "user": user, "priced_by": item.get("served_by"), "served_by": app.instance}


if __name__ == "__main__":
    for name in ("catalog", "users"):
        clients[name] = connect(name)
    log(f"{app.instance} calls catalog and users through the jishi client (control plane {CONTROL_PLANE})")
    try:
        app.run()
    finally:
        for client in clients.values():
            client.close()
