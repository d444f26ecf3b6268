"""Sizes in jishi.yaml and on the command line: a number of bytes, or a number with a unit.

    parse_size(4096) == parse_size("4096") == parse_size("4KiB") == parse_size("4k") == 4096
    parse_size("100MiB") == 100 * 1024 * 1024;  parse_size("1MB") == 1_000_000

Units: `B`; `KiB`, `MiB`, `GiB` (powers of 1024, also written `K`, `M`, `G` or `k`, `m`, `g` as nginx does);
`KB`, `MB`, `GB` (powers of 1000). Anything else is a `ValueError` that says which forms are accepted.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["SIZE_FIX", "format_size", "parse_size"]

SIZE_FIX = 'write a number of bytes, or a size like "32KiB", "100MiB", "1GiB"'

_KIB, _MIB, _GIB = 1024, 1024**2, 1024**3
_UNITS = {
    "": 1,
    "B": 1,
    "K": _KIB,
    "k": _KIB,
    "KiB": _KIB,
    "M": _MIB,
    "m": _MIB,
    "MiB": _MIB,
    "G": _GIB,
    "g": _GIB,
    "GiB": _GIB,
    "KB": 1000,
    "kB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*$")


def parse_size(value: Any) -> int:
    """Bytes from a whole number or a string like "32KiB", "100MiB", "1GB"; ValueError for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    if isinstance(value, str) and (match := _SIZE.match(value)) and match.group(2) in _UNITS:
        size = float(match.group(1)) * _UNITS[match.group(2)]
        if size == int(size):
            return int(size)
    raise ValueError(f'must be a size (bytes, or a string like "32KiB", "100MiB"), got {value!r}')


def format_size(size: int) -> str:
    """`size` bytes in the largest binary unit that divides it: 32768 → "32KiB", 1000 → "1000"."""
    for unit, factor in (("GiB", _GIB), ("MiB", _MIB), ("KiB", _KIB)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
