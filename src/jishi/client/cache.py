"""The directory's last-known-good copy on disk: written atomically, read when the directory starts.

The file is JSON `{"revision": R, "instances": [Instance, ...]}` holding every instance the directory knew at
revision R (in rotation or not). `save` writes `path.tmp-<pid>`, fsyncs it and renames it over `path`, so a
process that starts while the control plane is down reads the old copy or the new one, never a torn file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from jishi.registry.model import Instance
from jishi.statefile import write_json

__all__ = ["DirectoryCache"]

log = logging.getLogger(__name__)


class DirectoryCache:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[int, list[Instance]] | None:
        """(revision, instances) from the file; None if there is none or it cannot be used (logged)."""
        try:
            data = json.loads(self.path.read_bytes())
            revision = int(data["revision"])
            instances = [Instance.model_validate(item) for item in data["instances"]]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, ValidationError) as exc:
            log.error("cannot use the service directory cache %s (starting without it): %s", self.path, exc)
            return None
        return revision, instances

    def save(self, revision: int, instances: Iterable[Instance]) -> None:
        """Replace the file atomically (tmp + fsync + rename)."""
        data = {"revision": revision, "instances": [i.model_dump(mode="json") for i in instances]}
        write_json(self.path, data, compact=True)
