"""The SQLite revision log: schema, and the reads that derive state and history from it.

Layout (in the spirit of k3s's kine):

    log      one row per change, never updated: (id, rev, key, value, create_rev, version, lease, deleted, prev_id).
             `id` orders rows in write order; `rev` is the store revision of the change, shared by every write
             of one txn. A delete is a row with `deleted = 1` and an empty value (a tombstone); `prev_id` points at
             the row this one supersedes in the same life of the key (0 for a create), which gives `prev_kv`.
    current  (key → id of its latest live log row): a derived index of the current state, maintained in the same
             transaction as every log insert, so that reads at the head revision touch only live rows.
    meta     (name → integer): `revision` (the global revision, kept here so that it never depends on which log rows
             compaction keeps), `compact_revision`, `lease_high_water`.
    leases   (id, ttl): live leases. Deadlines are not stored: on open every lease restarts its full TTL.

State at a past revision R is, for every key, its newest log row with rev ≤ R, unless that row is a tombstone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from jishi.store._types import Event, EventType, KeyValue, prefix_end

SCHEMA = """
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    rev INTEGER NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    create_rev INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    prev_id INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS log_key_rev ON log (key, rev);
CREATE INDEX IF NOT EXISTS log_rev ON log (rev);
CREATE INDEX IF NOT EXISTS log_lease ON log (lease) WHERE lease != 0;
CREATE TABLE IF NOT EXISTS current (key BLOB PRIMARY KEY, id INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (id INTEGER PRIMARY KEY, ttl REAL NOT NULL);
INSERT OR IGNORE INTO meta (name, value) VALUES ('revision', 0), ('compact_revision', 0), ('lease_high_water', 0);
"""

# Columns of a KeyValue, in the order `kv_from_row` expects them (alias `l` is the log row).
KV_COLUMNS = "l.key, l.value, l.create_rev, l.rev, l.version, l.lease"
KV_WIDTH = 6


def connect(path: str, *, synchronous: str) -> sqlite3.Connection:
    """Open the database in WAL mode and create the schema if it is new."""
    if synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
        raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"{path}: could not switch to WAL mode (got {mode!r})")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def read_meta(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def write_meta(conn: sqlite3.Connection, name: str, value: int) -> None:
    conn.execute("UPDATE meta SET value = ? WHERE name = ?", (value, name))


def kv_from_row(row: tuple[Any, ...], offset: int = 0) -> KeyValue:
    """A KeyValue from `KV_COLUMNS` starting at `offset` of a row (SQLite hands BLOBs back as bytes)."""
    return KeyValue(*row[offset : offset + KV_WIDTH])


def key_filter(column: str, key: bytes, prefix: bool) -> tuple[str, tuple[bytes, ...]]:
    """A SQL condition (and its parameters) matching `key`, or every key starting with it."""
    if not prefix:
        return f"{column} = ?", (key,)
    end = prefix_end(key)
    if end == b"\0":  # the prefix is empty or all 0xff: no upper bound
        return f"{column} >= ?", (key,)
    return f"{column} >= ? AND {column} < ?", (key, end)


def key_matches(candidate: bytes, key: bytes, prefix: bool) -> bool:
    return candidate.startswith(key) if prefix else candidate == key


def current_row(conn: sqlite3.Connection, key: bytes) -> tuple[int, KeyValue] | None:
    """The live log row of `key` (its id and value), or None if the key does not exist."""
    row = conn.execute(
        f"SELECT l.id, {KV_COLUMNS} FROM current c JOIN log l ON l.id = c.id WHERE c.key = ?", (key,)
    ).fetchone()
    return None if row is None else (row[0], kv_from_row(row, 1))


def current_rows(conn: sqlite3.Connection, key: bytes, prefix: bool) -> list[tuple[int, KeyValue]]:
    """Live log rows (id, value) of `key` or the prefix, in key order."""
    cond, params = key_filter("c.key", key, prefix)
    rows = conn.execute(
        f"SELECT l.id, {KV_COLUMNS} FROM current c JOIN log l ON l.id = c.id WHERE {cond} ORDER BY c.key", params
    )
    return [(row[0], KeyValue(*row[1:])) for row in rows]


def range_at(conn: sqlite3.Connection, key: bytes, prefix: bool, revision: int) -> list[KeyValue]:
    """The keys of the range as they were at `revision` (the caller has checked it is not compacted)."""
    cond, params = key_filter("l.key", key, prefix)
    rows = conn.execute(
        f"SELECT {KV_COLUMNS} FROM log l WHERE {cond} AND l.rev <= ? AND l.deleted = 0"
        " AND NOT EXISTS (SELECT 1 FROM log n WHERE n.key = l.key AND n.rev > l.rev AND n.rev <= ?)"
        " ORDER BY l.key",
        (*params, revision, revision),
    ).fetchall()
    return [kv_from_row(row) for row in rows]


def lease_keys(conn: sqlite3.Connection, lease_id: int) -> list[bytes]:
    """Keys currently attached to `lease_id`, in key order."""
    rows = conn.execute(
        "SELECT l.key FROM log l JOIN current c ON c.id = l.id WHERE l.lease = ? AND l.lease != 0 ORDER BY l.key",
        (lease_id,),
    ).fetchall()
    return [bytes(row[0]) for row in rows]


def history(conn: sqlite3.Connection, key: bytes, prefix: bool, after: int, upto: int) -> list[Event]:
    """Events on the key or prefix with `after < revision <= upto`, in write order, with prev_kv when kept."""
    cond, params = key_filter("l.key", key, prefix)
    prev_columns = KV_COLUMNS.replace("l.", "p.")
    rows = conn.execute(
        f"SELECT l.deleted, {KV_COLUMNS}, p.id, {prev_columns} FROM log l LEFT JOIN log p ON p.id = l.prev_id"
        f" WHERE l.rev > ? AND l.rev <= ? AND {cond} ORDER BY l.id",
        (after, upto, *params),
    ).fetchall()
    events = []
    for row in rows:
        kv = kv_from_row(row, 1)
        prev = None if row[1 + KV_WIDTH] is None else kv_from_row(row, 2 + KV_WIDTH)
        events.append(Event(EventType.DELETE if row[0] else EventType.PUT, kv, prev))
    return events


def compact(conn: sqlite3.Connection, revision: int) -> int:
    """Delete history no read or watch at or after `revision` needs; returns the number of log rows removed.

    Kept: every row at `revision` or later — tombstones included, so that a watch from `revision` sees the
    deletions made at it, as etcd keeps them — and, below `revision`, each key's newest row unless a tombstone.
    """
    superseded = conn.execute(
        "DELETE FROM log WHERE rev < ?1"
        " AND EXISTS (SELECT 1 FROM log n WHERE n.key = log.key AND n.rev > log.rev AND n.rev <= ?1)",
        (revision,),
    ).rowcount
    tombstones = conn.execute("DELETE FROM log WHERE rev < ? AND deleted = 1", (revision,)).rowcount
    return superseded + tombstones


def load_leases(conn: sqlite3.Connection) -> Iterable[tuple[int, float]]:
    return [(int(i), float(t)) for i, t in conn.execute("SELECT id, ttl FROM leases ORDER BY id")]
