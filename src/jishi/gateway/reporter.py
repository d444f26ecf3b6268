"""Where the gateway's metrics come from, and their push to the control plane once a second.

Theory of operation
-------------------
A *metrics source* has two methods: `current()` — the gateway's cumulative report (`jishi.gateway.stats`) for
a scrape or a push, without events — and `take_events()` — the events (EventRecord dicts) that happened since
the last call. There are two:

- `LocalMetrics(proxy)`: one gateway process; reads its proxy directly and drains `proxy.events`.
- `WorkerMetrics(directory, live)`: the parent of N workers. Each worker runs `publish_worker`, which writes
  its cumulative report to `directory/worker-<pid>.json` every second (atomically: write, then rename) along
  with its recent events numbered in order; the parent sums the files. A worker that died keeps its counters
  in the sum (they stay monotonic across worker restarts) but its gauges (connections, pool, breakers) drop
  out. The parent clears the directory at start, so a previous run's counts are not added in.

`Reporter(control_plane, gateway_id, source)` pushes `current()` plus the events every `interval` seconds
with `report_gateway`. When the control plane cannot be reached the events are kept (up to 1000, oldest
dropped first) and sent with the next report that gets through; the failure is logged once, and the recovery.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jishi.gateway.stats import merge, report

if TYPE_CHECKING:
    from jishi.gateway.proxy import Proxy
    from jishi.registry.protocol import ControlPlane

__all__ = ["LocalMetrics", "MetricsSource", "Reporter", "WorkerMetrics", "publish_worker"]

log = logging.getLogger(__name__)

MAX_EVENTS = 1000


class MetricsSource(Protocol):
    def current(self) -> dict[str, Any]: ...
    def take_events(self) -> list[dict[str, Any]]: ...


def _drain(proxy: Proxy) -> list[dict[str, Any]]:
    events = proxy.events
    out = [event.model_dump(mode="json") for event in events]
    events.clear()
    return out


class LocalMetrics:
    """The metrics of the gateway process `proxy` runs in."""

    def __init__(self, proxy: Proxy, started_at: float | None = None) -> None:
        self.proxy = proxy
        self.started_at = time.time() if started_at is None else started_at

    def current(self) -> dict[str, Any]:
        return report(self.proxy, self.started_at)

    def take_events(self) -> list[dict[str, Any]]:
        return _drain(self.proxy)


async def publish_worker(proxy: Proxy, directory: Path, *, interval: float = 1.0, started_at: float) -> None:
    """Write this worker's report to `directory/worker-<pid>.json` every `interval` seconds until cancelled
    (and once more then)."""
    path = directory / f"worker-{os.getpid()}.json"
    log_: deque[tuple[int, dict[str, Any]]] = deque(maxlen=MAX_EVENTS)
    seq = 0

    def write() -> None:
        nonlocal seq
        for event in _drain(proxy):
            seq += 1
            log_.append((seq, event))
        data = report(proxy, started_at)
        data["event_log"] = list(log_)
        tmp = path.with_suffix(".tmp")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data))
            tmp.replace(path)
        except OSError as exc:
            log.error("cannot write the worker metrics file %s: %s", path, exc)

    try:
        while True:
            write()
            await asyncio.sleep(interval)
    finally:
        write()


class WorkerMetrics:
    """The sum of the workers' metrics files in `directory`; `live()` gives the PIDs of running workers."""

    def __init__(self, directory: Path, live: Callable[[], Collection[int]]) -> None:
        self.directory = directory
        self.live = live
        self._seen: dict[int, int] = {}  # pid → last event number taken

    def clear(self) -> None:
        """Forget the files of an earlier run."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for path in self.directory.glob("worker-*"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _read(self) -> list[dict[str, Any]]:
        reports = []
        for path in sorted(self.directory.glob("worker-*.json")):
            try:
                reports.append(json.loads(path.read_text()))
            except FileNotFoundError:
                continue
            except (OSError, ValueError) as exc:
                log.warning("skipping the unreadable worker metrics file %s: %s", path, exc)
        return reports

    def current(self) -> dict[str, Any]:
        live = set(self.live())
        reports = self._read()
        for rep in reports:
            rep.pop("event_log", None)
            if rep.get("pid") not in live:  # its counters stay; what it held open is gone
                rep["workers"] = 0
                rep["connections"] = 0
                rep["upstream"] = {"idle": 0, "busy": 0}
                for state in rep.get("policies", {}).values():
                    state["breaker"] = None
                    state["ejected"] = []
        return merge(reports)

    def take_events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for rep in self._read():
            pid = int(rep.get("pid", 0))
            seen = self._seen.get(pid, 0)
            for seq, event in rep.get("event_log", ()):
                if seq > seen:
                    events.append(event)
                    self._seen[pid] = seq
        events.sort(key=lambda e: e.get("time", 0.0))
        return events


class Reporter:
    """Pushes `source`'s report to the control plane every `interval` seconds; see the module doc."""

    def __init__(
        self, control_plane: ControlPlane, gateway_id: str, source: MetricsSource, *, interval: float = 1.0
    ) -> None:
        self.cp = control_plane
        self.gateway_id = gateway_id
        self.source = source
        self.interval = interval
        self.pending: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.sent = 0  # reports accepted so far
        self._failing = False

    async def push(self) -> bool:
        """Send one report now; True if the control plane took it."""
        self.pending.extend(self.source.take_events())
        data = self.source.current()
        data["events"] = list(self.pending)
        try:
            await self.cp.report_gateway(self.gateway_id, data)
        except Exception as exc:
            if not self._failing:
                log.warning(
                    "cannot report metrics to the control plane (%s); keeping %d events", exc, len(self.pending)
                )
            self._failing = True
            return False
        if self._failing:
            log.info("metrics reports to the control plane go through again")
        self._failing = False
        self.pending.clear()
        self.sent += 1
        return True

    async def run(self) -> None:
        """Push every `interval` seconds until cancelled."""
        while True:
            await self.push()
            await asyncio.sleep(self.interval)
