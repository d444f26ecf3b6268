"""Values that cross the store interface: key-values, events, txn comparisons and operations.

The model is etcd's (v3): one global `revision` counts every change; each key remembers the revision that
created it (`create_revision`), the one that last changed it (`mod_revision`) and how many times it was written
since creation (`version`, 1 on create). A delete ends the key's life; a later put starts a new life with
version 1. Keys and values are `bytes`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0  # 0: no lease


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Event:
    """One change. For DELETE, `kv.value` is empty and `kv.mod_revision` is the delete's revision."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: list[KeyValue]
    revision: int  # the store's revision at the time of the read
    count: int  # number of keys in range (before `limit`)
    more: bool = False


class CompareTarget(enum.Enum):
    VALUE = "value"
    VERSION = "version"
    CREATE = "create_revision"
    MOD = "mod_revision"
    LEASE = "lease"


class CompareOp(enum.Enum):
    EQUAL = "=="
    NOT_EQUAL = "!="
    LESS = "<"
    GREATER = ">"


@dataclass(frozen=True, slots=True)
class Compare:
    """A txn guard. A missing key has value b"", version 0, create/mod revision 0 and lease 0 (as in etcd)."""

    key: bytes
    target: CompareTarget
    op: CompareOp
    operand: bytes | int


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes
    lease: int = 0
    prev_kv: bool = False


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes
    prefix: bool = False  # delete every key starting with `key`
    prev_kv: bool = False


@dataclass(frozen=True, slots=True)
class Get:
    key: bytes
    prefix: bool = False


Op = Put | Delete | Get


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: int
    deleted: int
    prev_kvs: list[KeyValue] = field(default_factory=list)


OpResult = PutResult | DeleteResult | RangeResult


@dataclass(frozen=True, slots=True)
class TxnResult:
    succeeded: bool  # True: compares held and `success` ops ran; False: `failure` ops ran
    revision: int  # store revision after the txn (one revision for the whole txn if it wrote anything)
    results: list[OpResult]


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    ttl: float  # granted TTL in seconds
    remaining: float  # seconds until expiry at the time of the call
    keys: list[bytes] = field(default_factory=list)


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with `prefix` (etcd's range_end for a prefix)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\0"  # every key
