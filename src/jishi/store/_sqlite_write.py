"""One write transaction on the revision log: puts and deletes at a single new revision, and txn compares.

`LogWriter` is used inside an open SQLite transaction (the store begins and commits it). Every change it makes
is a new log row at revision `base + 1` plus an update of the `current` index, and it collects the events it
produced, so that after the commit the store can advance its revision and publish them to watchers. If no
change is made the revision does not move. Writing one key twice in one transaction is refused (as etcd
refuses a txn with a duplicate key): every key has at most one change per revision.
"""

from __future__ import annotations

import sqlite3

from jishi.core.leases import LeaseTable
from jishi.errors import InvalidRequestError, LeaseNotFoundError
from jishi.store._sqlite_log import current_row, current_rows
from jishi.store._types import (
    Compare,
    CompareOp,
    CompareTarget,
    DeleteResult,
    Event,
    EventType,
    KeyValue,
    PutResult,
)

_INSERT = (
    "INSERT INTO log (rev, key, value, create_rev, version, lease, deleted, prev_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class LogWriter:
    """Appends the changes of one transaction to the log, all at revision `base + 1`."""

    def __init__(self, conn: sqlite3.Connection, base: int, leases: LeaseTable) -> None:
        self._conn = conn
        self.base = base
        self._leases = leases
        self.events: list[Event] = []

    @property
    def revision(self) -> int:
        """The store revision as this transaction leaves it (unchanged until something is written)."""
        return self.base + 1 if self.events else self.base

    def put(self, key: bytes, value: bytes, lease: int = 0, *, prev_kv: bool = False) -> PutResult:
        if lease and lease not in self._leases:
            raise LeaseNotFoundError(lease)
        rev = self.base + 1
        found = current_row(self._conn, key)
        if found is None:
            prev_id, prev, create_rev, version = 0, None, rev, 1
        else:
            prev_id, prev = found
            create_rev, version = prev.create_revision, prev.version + 1
        row_id = self._insert(rev, key, value, create_rev, version, lease, 0, prev_id)
        self._conn.execute("INSERT OR REPLACE INTO current (key, id) VALUES (?, ?)", (key, row_id))
        kv = KeyValue(key, value, create_rev, rev, version, lease)
        self.events.append(Event(EventType.PUT, kv, prev))
        return PutResult(rev, prev if prev_kv else None)

    def delete(self, key: bytes, *, prefix: bool = False, prev_kv: bool = False) -> DeleteResult:
        rows = current_rows(self._conn, key, prefix)
        if not rows:
            return DeleteResult(self.revision, 0)
        rev = self.base + 1
        for prev_id, prev in rows:
            self._insert(rev, prev.key, b"", 0, 0, 0, 1, prev_id)
            self._conn.execute("DELETE FROM current WHERE key = ?", (prev.key,))
            self.events.append(Event(EventType.DELETE, KeyValue(prev.key, b"", 0, rev, 0, 0), prev))
        return DeleteResult(rev, len(rows), [kv for _, kv in rows] if prev_kv else [])

    def compare(self, cmp: Compare) -> bool:
        found = current_row(self._conn, cmp.key)
        return compare_holds(found[1] if found else None, cmp)

    def _insert(self, *row: int | bytes) -> int:
        try:
            cursor = self._conn.execute(_INSERT, row)
        except sqlite3.IntegrityError:
            raise InvalidRequestError(
                f"key {row[1]!r} is written twice in one transaction; a txn may change each key at most once"
            ) from None
        assert cursor.lastrowid is not None
        return cursor.lastrowid


def compare_holds(kv: KeyValue | None, cmp: Compare) -> bool:
    """Whether a txn guard holds for `kv` (None: the key is missing — value b"", every number 0)."""
    actual: bytes | int
    if cmp.target is CompareTarget.VALUE:
        actual = kv.value if kv else b""
        if not isinstance(cmp.operand, bytes):
            raise InvalidRequestError(f"a VALUE compare on {cmp.key!r} needs a bytes operand, not {cmp.operand!r}")
    else:
        actual = _number(kv, cmp.target)
        if not isinstance(cmp.operand, int) or isinstance(cmp.operand, bool):
            raise InvalidRequestError(
                f"a {cmp.target.name} compare on {cmp.key!r} needs an int operand, not {cmp.operand!r}"
            )
    operand = cmp.operand
    if cmp.op is CompareOp.EQUAL:
        return actual == operand
    if cmp.op is CompareOp.NOT_EQUAL:
        return actual != operand
    if cmp.op is CompareOp.LESS:
        return actual < operand  # type: ignore[operator]  # both bytes or both int, checked above
    return actual > operand  # type: ignore[operator]


def _number(kv: KeyValue | None, target: CompareTarget) -> int:
    if kv is None:
        return 0
    if target is CompareTarget.VERSION:
        return kv.version
    if target is CompareTarget.CREATE:
        return kv.create_revision
    if target is CompareTarget.MOD:
        return kv.mod_revision
    return kv.lease
