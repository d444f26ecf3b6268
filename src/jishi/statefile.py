"""Small state files written atomically: a reader sees the old content or the new, never half of either.

The gateway's routing snapshot, the agent's saved services and process groups, and the client directory's
cache are all written this way: the bytes go to a temporary file beside the target, which is fsynced (when
`durable`), renamed over the target, and the folder fsynced so the rename itself survives a power loss.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["write_atomic", "write_json"]


def write_atomic(path: Path, payload: bytes, *, durable: bool = True) -> None:
    """Replace `path` with `payload` (tmp + fsync + rename + folder fsync; no fsyncs unless `durable`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)


def write_json(path: Path, data: object, *, durable: bool = True, compact: bool = False) -> None:
    """Replace `path` with `data` as JSON, atomically (see `write_atomic`)."""
    text = json.dumps(data, separators=(",", ":")) if compact else json.dumps(data, indent=1) + "\n"
    write_atomic(path, text.encode(), durable=durable)
