"""The shop's users, in their own SQLite database ($DB_PATH).

GET  /users          every user
GET  /users/{id}     one user, or 404
POST /users          {"name": ..., "email": ...} → 201 with the new user
"""

from __future__ import annotations

import os
import sqlite3

from shophttp import App, HttpError, Reply, Request, open_db

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE
);
"""


def seed(conn: sqlite3.Connection) -> None:
    if conn.execute("SELECT COUNT(*) FROM users").fetchone()[0] == 0:
        conn.executemany(
            "INSERT INTO users (name, email) VALUES (?, ?)",
            [("Lin Wei", "lin@example.com"), ("Ana Souza", "ana@example.com"), ("Sam Okafor", "sam@example.com")],
        )


app = App("users")
db = open_db(os.environ.get("DB_PATH", "users.sqlite3"), SCHEMA, seed)


@app.route("GET", r"/users")
def list_users(req: Request) -> Reply:
    rows = db().execute("SELECT id, name, email FROM users ORDER BY id").fetchall()
    return 200, {"users": [dict(row) for row in rows], "served_by": app.instance}


@app.route("GET", r"/users/(\d+)")
def get_user(req: Request, user_id: str) -> Reply:
    row = db().execute("SELECT id, name, email FROM users WHERE id = ?", (int(user_id),)).fetchone()
    if row is None:
        raise HttpError(404, "not_found", f"no user {user_id}")
    return 200, dict(row)


@app.route("POST", r"/users")
def create_user(req: Request) -> Reply:
    body = req.json()
    if not isinstance(body, dict) or not isinstance(body.get("name"), str) or "@" not in str(body.get("email", "")):
        raise HttpError(400, "invalid_user", 'send {"name": "...", "email": "someone@example.com"}')
    try:
        cur = db().execute("INSERT INTO users (name, email) VALUES (?, ?)", (body["name"], body["email"]))
    except sqlite3.IntegrityError:
        raise HttpError(409, "email_taken", f"a user with email {body['email']} exists already") from None
    return 201, {"id": cur.lastrowid, "name": body["name"], "email": body["email"]}


if __name__ == "__main__":
    app.run()
