"""The shop's catalog: items and their prices, in its own SQLite database ($DB_PATH).

GET /items          every item
GET /items/{id}     one item, or 404
"""

from __future__ import annotations

import os
import sqlite3

from shophttp import App, HttpError, Reply, Request, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    stock INTEGER NOT NULL DEFAULT 0
);
"""
ITEMS = [
    ("Tea pot, cast iron", 3900, 12),
    ("Green tea, 100 g", 1250, 80),
    ("Bamboo whisk", 890, 30),
    ("Stoneware cup", 1500, 45),
    ("Tea towel, linen", 700, 60),
]


def seed(conn: sqlite3.Connection) -> None:
    if conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0:
        conn.executemany("INSERT INTO items (name, price_cents, stock) VALUES (?, ?, ?)", ITEMS)


app = App("catalog")
db = open_db(os.environ.get("DB_PATH", "catalog.sqlite3"), SCHEMA, seed)


@app.route("GET", r"/items")
def list_items(req: Request) -> Reply:
    rows = db().execute("SELECT id, name, price_cents, stock FROM items ORDER BY id").fetchall()
    return 200, {"items": [dict(row) for row in rows], "served_by": app.instance}


@app.route("GET", r"/items/(\d+)")
def get_item(req: Request, item_id: str) -> Reply:
    row = db().execute("SELECT id, name, price_cents, stock FROM items WHERE id = ?", (int(item_id),)).fetchone()
    if row is None:
        raise HttpError(404, "not_found", f"no item {item_id}")
    return 200, {**dict(row), "served_by": app.instance}


if __name__ == "__main__":
    app.run()
