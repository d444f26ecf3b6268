"""The desired services: followed on the control plane, with a local copy for starts while it is down.

`run()` reads a snapshot of `/jishi/services/` and then watches it; a dropped watch or an unreachable control
plane is retried with a growing pause while the last known desired state stays in force (instances keep
running); a compacted revision means a fresh snapshot.

Every change is saved (debounced, atomically) to `data_dir/services.json`. If the control plane cannot be read
when the agent starts, the agent follows that saved copy — it runs what it ran before — until the control plane
answers, and then follows the control plane again (its snapshot replaces the copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from jishi.registry.follow import follow
from jishi.registry.model import SERVICES, ServiceSpec
from jishi.registry.protocol import ControlPlane
from jishi.statefile import write_json
from jishi.store import EventType, KeyValue

__all__ = ["ServiceFollower"]

log = logging.getLogger(__name__)

SAVE_DELAY = 0.5  # seconds: changes within this window are saved together


class ServiceFollower:
    """Keeps `desired` (service name → spec) current; calls `on_change` after every change."""

    def __init__(
        self, cp: ControlPlane, saved: Path, on_change: Callable[[], None], *, save_delay: float = SAVE_DELAY
    ) -> None:
        self._cp, self.saved, self._on_change, self._save_delay = cp, saved, on_change, save_delay
        self.desired: dict[str, ServiceSpec] = {}
        self.synced = asyncio.Event()  # desired state is known (from the control plane or the saved copy)
        self.live = False  # following the control plane, not the saved copy
        self._saver: asyncio.Task[None] | None = None
        self._unsaved = False
        self._saved_tried = False

    async def run(self) -> None:
        await follow(
            self._cp,
            SERVICES,
            on_snapshot=self._reset,
            on_event=lambda event: self._apply(event.type, event.kv),
            on_error=self._unreachable,
            backoff=(0.1, 2.0),
            name="services",
        )

    def _reset(self, revision: int, kvs: list[KeyValue]) -> None:
        if not self.live and self.synced.is_set():
            log.warning("the control plane answers again; following its services instead of %s", self.saved)
        self.live = True
        self._changed({spec.name: spec for spec in map(_parse, kvs) if spec is not None})

    def _unreachable(self, exc: BaseException) -> None:
        if not self._saved_tried:
            self._saved_tried = True
            self._use_saved(exc)

    def _apply(self, kind: EventType, kv: KeyValue) -> None:
        desired = dict(self.desired)
        if kind is EventType.DELETE:
            desired.pop(kv.key.decode()[len(SERVICES) :], None)
        else:
            spec = _parse(kv)
            if spec is None:
                return
            desired[spec.name] = spec
        self._changed(desired)

    def _changed(self, desired: dict[str, ServiceSpec]) -> None:
        self.desired = desired
        self.synced.set()
        self._on_change()
        self._unsaved = True
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_later())

    # --- the saved copy
    def _use_saved(self, exc: BaseException) -> None:
        if self.synced.is_set():
            return
        specs = load_saved(self.saved)
        if specs is None:
            return
        log.warning(
            "the control plane is unreachable at start (%s); running the %d services saved in %s until it answers",
            exc,
            len(specs),
            self.saved,
        )
        self.desired = {spec.name: spec for spec in specs}
        self.synced.set()
        self._on_change()

    async def _save_later(self) -> None:
        await asyncio.sleep(self._save_delay)
        self._save()

    def _save(self) -> None:
        if not self._unsaved:
            return
        self._unsaved = False
        data = {"services": [spec.model_dump(mode="json") for spec in self.desired.values()]}
        try:
            write_json(self.saved, data, durable=True)
        except OSError as exc:
            log.error("cannot save the desired services to %s: %s", self.saved, exc)

    async def flush(self) -> None:
        """Save a pending change now (at shutdown)."""
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
        self._save()


def load_saved(path: Path) -> list[ServiceSpec] | None:
    """The specs saved in `path`; None if there is no usable copy (logged)."""
    try:
        entries = json.loads(path.read_text())["services"]
    except FileNotFoundError:
        log.warning("no saved copy of the services at %s: nothing to run until the control plane answers", path)
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.error("cannot read the saved services at %s (%s); waiting for the control plane", path, exc)
        return None
    specs = []
    for entry in entries:
        try:
            specs.append(ServiceSpec.model_validate(entry))
        except ValueError as exc:
            log.error("ignoring an invalid saved service spec in %s: %s", path, exc)
    return specs


def _parse(kv: KeyValue) -> ServiceSpec | None:
    try:
        return ServiceSpec.model_validate_json(kv.value)
    except ValueError as exc:
        log.error("ignoring invalid service spec at %s: %s", kv.key.decode(errors="replace"), exc)
        return None
