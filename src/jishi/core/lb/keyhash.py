"""The 64-bit hash behind the consistent-hash pickers (ring hash and Maglev).

Why blake2b: the hash must give the same answer in every gateway worker and after every restart (so a key keeps
its peer), which rules out the built-in `hash()` (salted per process by PYTHONHASHSEED). It must spread short,
similar keys ("10.0.0.1", "10.0.0.2", "peer-3#17") evenly over 64 bits, which CRC32/Adler32 do not (they are
linear: near-identical inputs land near each other, and there are only 32 bits). xxhash would be faster but is
not a dependency; `hashlib.blake2b(digest_size=8)` is in the standard library, is implemented in C, and costs
about 0.5 µs for a short key, faster than md5 (ketama's choice) or sha1. Keys repeat (a client IP, a session
cookie), so the pickers also keep a bounded `KeyCache` of key → slot, which makes a repeated key cost a dict
lookup.
"""

from __future__ import annotations

from hashlib import blake2b

__all__ = ["KeyCache", "hash64", "hash64_str"]


def hash64(data: bytes, salt: bytes = b"") -> int:
    """An unsigned 64-bit hash of `data`, stable across processes and restarts; `salt` gives independent hashes."""
    if salt:
        return int.from_bytes(blake2b(data, digest_size=8, salt=salt).digest(), "little")
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


def hash64_str(text: str, salt: bytes = b"") -> int:
    """`hash64` of the UTF-8 encoding of `text`."""
    return hash64(text.encode(), salt)


class KeyCache(dict[bytes, int]):
    """A dict of key → slot that empties itself when it reaches `limit` entries (cheap, bounded, no LRU order)."""

    __slots__ = ("limit",)

    def __init__(self, limit: int = 4096) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: bytes, slot: int) -> int:
        """Remember `slot` for `key` and return it."""
        if len(self) >= self.limit:
            self.clear()
        self[key] = slot
        return slot
