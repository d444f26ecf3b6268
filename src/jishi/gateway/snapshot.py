"""The last-known-good routing snapshot on disk: written atomically, read at start.

`save` writes `path.tmp-<pid>`, fsyncs it, renames it over `path` and fsyncs the directory, so a reader (or a
gateway restarted after a crash) sees the old snapshot or the new one, never a torn file. Several worker
processes may share one file: each writes its own temporary file and the last rename wins.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

__all__ = ["SnapshotFile"]

log = logging.getLogger(__name__)


class SnapshotFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        """The saved snapshot, or None if there is none or it cannot be read (logged)."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("cannot read the routing snapshot %s (starting without it): %s", self.path, exc)
            return None
        if not isinstance(data, dict):
            log.error("routing snapshot %s is not a JSON object; starting without it", self.path)
            return None
        return data

    def save(self, data: dict[str, Any]) -> None:
        """Replace the snapshot atomically (tmp + fsync + rename + directory fsync)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        payload = json.dumps(data, separators=(",", ":")).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dirfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
