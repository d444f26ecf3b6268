"""Revisioned key-value state store with the etcd v3 model (see `jishi.store.base`)."""

from jishi.store._types import (
    Compare,
    CompareOp,
    CompareTarget,
    Delete,
    DeleteResult,
    Event,
    EventType,
    Get,
    KeyValue,
    Lease,
    Op,
    OpResult,
    Put,
    PutResult,
    RangeResult,
    TxnResult,
    prefix_end,
)
from jishi.store.base import Store

__all__ = [
    "Compare",
    "CompareOp",
    "CompareTarget",
    "Delete",
    "DeleteResult",
    "Event",
    "EventType",
    "Get",
    "KeyValue",
    "Lease",
    "Op",
    "OpResult",
    "Put",
    "PutResult",
    "RangeResult",
    "Store",
    "TxnResult",
    "prefix_end",
]
