"""The last-known-good routing snapshot on disk: written atomically, read at start.

`save` goes through `jishi.statefile` (temporary file, fsync, rename, folder fsync), so a reader (or a gateway
restarted after a crash) sees the old snapshot or the new one, never a torn file. Several worker
processes may share one file: each writes its own temporary file and the last rename wins.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from jishi.statefile import write_json

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
        write_json(self.path, data, compact=True)
