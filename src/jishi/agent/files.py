"""Small state files of the agent, written atomically: readers see the old content or the new, never half."""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["write_json"]


def write_json(path: Path, data: object, *, durable: bool = False) -> None:
    """Replace `path` with `data` as JSON via a temporary file and rename; `durable` also fsyncs it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
