"""The shop's orders, in their own SQLite database ($DB_PATH). Prices come from the catalog service and users
from the users service, both called through the jishi gateway ($CATALOG_URL, $USERS_URL) — never their
databases.

    GET  /orders          every order
    GET  /orders/{id}     one order, or 404
    POST /orders          {"user_id": 1, "item_id": 2, "qty": 3} → 201 with the priced order
"""

from __future__ import annotations

import os
import sqlite3
import time

from shophttp import App, HttpError, Reply, Request, call_json, open_db

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
CATALOG_URL = os.environ.get("CATALOG_URL", "http://127.0.0.1:8080/api/catalog").rstrip("/")
USERS_URL = os.environ.get("USERS_URL", "http://127.0.0.1:8080/api/users").rstrip("/")
COLUMNS = "id, user_id, item_id, item_name, qty, unit_price_cents, total_cents, created_at"


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


def _fetch(url: str, what: str) -> dict[str, object]:
    status, body = call_json("GET", url)
    if status == 404:
        raise HttpError(422, f"unknown_{what}", f"there is no such {what} ({url})")
    if status != 200 or not isinstance(body, dict):
        raise HttpError(502, "upstream_error", f"GET {url} answered {status}: {body}")
    return body


@app.route("POST", r"/orders")
def create_order(req: Request) -> Reply:
    body = req.json()
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_order", 'send {"user_id": 1, "item_id": 2, "qty": 1}')
    user_id, item_id = _positive_int(body, "user_id"), _positive_int(body, "item_id")
    qty = _positive_int(body, "qty") if "qty" in body else 1
    user = _fetch(f"{USERS_URL}/users/{user_id}", "user")
    item = _fetch(f"{CATALOG_URL}/items/{item_id}", "item")
    unit = int(item["price_cents"])  # type: ignore[call-overload]
    cur = db().execute(
        "INSERT INTO orders (user_id, item_id, item_name, qty, unit_price_cents, total_cents, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (user_id, item_id, item["name"], qty, unit, unit * qty, time.time()),
    )
    order = dict(db().execute(f"SELECT {COLUMNS} FROM orders WHERE id = ?", (cur.lastrowid,)).fetchone())
    return 201, {**order, "user": user, "priced_by": item.get("served_by"), "served_by": app.instance}


if __name__ == "__main__":
    app.run()
