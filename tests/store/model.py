"""A dict-based reference model of the etcd store semantics, and hypothesis strategies of operations on it.

The model is the obviously-correct version: a dict of current key-values, a revision counter, and a copy of
the whole state at every revision. The property test in `conformance.py` runs the same random operations on
it and on a real backend and demands identical state, revisions and history.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from jishi.store import Compare, CompareOp, CompareTarget, Delete, KeyValue, Put

KEYS = [b"a", b"ab", b"a\xff", b"a\xff\xff", b"a\xff\x00", b"b", b"\xff", b"\xff\xff"]
PREFIXES = [b"a", b"a\xff", b"\xff", b"b", b""]


class ReferenceStore:
    """The etcd model in a dict: current values, one revision counter, the state at every revision."""

    def __init__(self) -> None:
        self.kvs: dict[bytes, KeyValue] = {}
        self.revision = 0
        self.snapshots: dict[int, dict[bytes, KeyValue]] = {0: {}}

    def put(self, key: bytes, value: bytes) -> int:
        self._apply([Put(key, value)])
        return self.revision

    def delete(self, key: bytes, prefix: bool) -> int:
        """Returns how many keys were deleted."""
        before = len(self.kvs)
        self._apply([Delete(key, prefix)])
        return before - len(self.kvs)

    def txn(self, compare: list[Compare], success: list[Put | Delete], failure: list[Put | Delete]) -> bool:
        ok = all(self._holds(c) for c in compare)
        self._apply(success if ok else failure)
        return ok

    def _holds(self, c: Compare) -> bool:
        kv = self.kvs.get(c.key)
        if c.target is CompareTarget.VALUE:
            actual: bytes | int = kv.value if kv else b""
        else:
            fields = {
                CompareTarget.VERSION: "version",
                CompareTarget.CREATE: "create_revision",
                CompareTarget.MOD: "mod_revision",
                CompareTarget.LEASE: "lease",
            }
            actual = getattr(kv, fields[c.target]) if kv else 0
        return {
            CompareOp.EQUAL: actual == c.operand,
            CompareOp.NOT_EQUAL: actual != c.operand,
            CompareOp.LESS: actual < c.operand,  # type: ignore[operator]
            CompareOp.GREATER: actual > c.operand,  # type: ignore[operator]
        }[c.op]

    def _apply(self, ops: list[Put | Delete]) -> None:
        rev = self.revision + 1
        changed = False
        for op in ops:
            if isinstance(op, Put):
                old = self.kvs.get(op.key)
                if old is None:
                    self.kvs[op.key] = KeyValue(op.key, op.value, rev, rev, 1)
                else:
                    self.kvs[op.key] = replace(old, value=op.value, mod_revision=rev, version=old.version + 1)
                changed = True
            else:
                doomed = [k for k in self.kvs if (k.startswith(op.key) if op.prefix else k == op.key)]
                for k in doomed:
                    del self.kvs[k]
                changed = changed or bool(doomed)
        if changed:
            self.revision = rev
            self.snapshots[rev] = dict(self.kvs)


keys = st.sampled_from(KEYS)
values = st.binary(max_size=3)
puts = st.builds(Put, keys, values)
single_deletes = st.builds(Delete, keys)
compares = st.one_of(
    st.builds(Compare, keys, st.just(CompareTarget.VALUE), st.sampled_from(list(CompareOp)), values),
    st.builds(
        Compare,
        keys,
        st.sampled_from([CompareTarget.VERSION, CompareTarget.CREATE, CompareTarget.MOD]),
        st.sampled_from(list(CompareOp)),
        st.integers(0, 8),
    ),
)
# A txn changes each key at most once (etcd refuses duplicates), so its write ops have distinct keys.
txn_ops = st.lists(st.one_of(puts, single_deletes), max_size=3, unique_by=lambda op: op.key)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, values),
        st.tuples(st.just("delete"), st.sampled_from(KEYS + PREFIXES), st.booleans()),
        st.tuples(st.just("txn"), st.lists(compares, max_size=2), txn_ops, txn_ops),
    ),
    max_size=25,
)
