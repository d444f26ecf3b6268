"""`jishi server`: the control-plane process — the store, the HTTP API on uvicorn, and the reaper.

    serve("127.0.0.1:8500", Path(".jishi"))       # blocks until SIGINT/SIGTERM
    python -m jishi.server --listen 127.0.0.1:8500 --data-dir .jishi

`ControlPlaneServer` owns everything it runs: the uvicorn server and the reaper task live in one TaskGroup,
and `stop()` ends them in order — close the watch streams (so no response hangs), let uvicorn finish the
requests in flight (bounded by `grace`), cancel the reaper. `serve()` then closes the store. The reaper
deletes instances past their deregistration deadline every `reap_interval` seconds (`Registry.reap`).
The compactor keeps the store's history bounded like etcd's revision-mode auto-compaction: every
`compact_interval` seconds it forgets history older than the newest `history_revisions` revisions, so a
watcher can resume from any revision that recent (older resume points get `compacted` and re-read).
The same TaskGroup runs the alert evaluator (`jishi.server.alerts.AlertService`, on the stored `alerting:`
settings, with the gateways' stats as a metric source) and the event retention sweeper
(`jishi.server.events.EventSweeper`: at most `max_events` events, none older than `max_event_age`), and
keeps the event log's in-memory index (`jishi.registry.events.EventIndex`) that queries are answered from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn

from jishi.alerting import StatsSource
from jishi.config.listen import parse_listen
from jishi.registry import Registry
from jishi.registry.events import EventIndex
from jishi.server.alerts import AlertService
from jishi.server.app import create_app
from jishi.server.events import EventStreams, EventSweeper
from jishi.server.watch import WatchStreams
from jishi.store.sqlite import SqliteStore

__all__ = ["ControlPlaneServer", "parse_listen", "run", "serve"]

log = logging.getLogger(__name__)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the owner decides when to stop (see `ControlPlaneServer`)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ControlPlaneServer:
    """The API and the reaper on one registry. `await run()` serves until `stop()` is called."""

    def __init__(
        self,
        registry: Registry,
        *,
        host: str = "127.0.0.1",
        port: int = 8500,
        heartbeat: float = 2.0,
        reap_interval: float = 0.5,
        compact_interval: float = 60.0,
        history_revisions: int = 10_000,
        grace: int = 5,
        max_events: int = 10_000,
        max_event_age: float = 7 * 86400.0,
        sweep_interval: float = 5.0,
        alert_interval: float | None = None,
    ) -> None:
        self.registry = registry
        self.streams = WatchStreams(registry, heartbeat=heartbeat)
        self.app = create_app(registry, streams=self.streams)
        registry.event_index = self.event_index = EventIndex()
        self.event_streams: EventStreams = self.app.state.event_streams
        self.event_streams.heartbeat = heartbeat
        self.sweeper = EventSweeper(registry, max_events=max_events, max_age=max_event_age, interval=sweep_interval)
        board = getattr(self.app.state, "stats", None)
        stats = [StatsSource(lambda: board.snapshot(time.time()))] if board is not None else []
        self.alerts = AlertService(registry, sources=stats, interval=alert_interval)
        self.app.state.alerts = self.alerts
        self._reap_interval = reap_interval
        self._compact_interval = compact_interval
        self._history_revisions = history_revisions
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            lifespan="off",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=grace,
        )
        self._uvicorn = _Uvicorn(config)

    @property
    def started(self) -> bool:
        return self._uvicorn.started

    def stop(self) -> None:
        """Begin a graceful stop: end the watch streams, then let uvicorn finish and return from `run()`."""
        if not self._uvicorn.should_exit:
            log.info("control plane stopping")
        self.streams.close_all()
        self.event_streams.close_all()
        self._uvicorn.should_exit = True

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            reaper = tasks.create_task(self._reap_forever(), name="jishi-reaper")
            compactor = tasks.create_task(self._compact_forever(), name="jishi-compactor")
            index = tasks.create_task(self.event_index.run(self.registry), name="jishi-event-index")
            sweeper = tasks.create_task(self.sweeper.run(), name="jishi-event-sweeper")
            alerts = tasks.create_task(self.alerts.run(), name="jishi-alerts")
            try:
                await self._uvicorn.serve()
            finally:
                self.streams.close_all()
                self.event_streams.close_all()
                for task in (reaper, compactor, index, sweeper, alerts):
                    task.cancel()

    async def _reap_forever(self) -> None:
        while True:
            try:
                await self.registry.reap()
            except Exception:
                log.exception("the deregistration reaper failed; trying again in %.1f s", self._reap_interval)
            await asyncio.sleep(self._reap_interval)

    async def compact_once(self) -> int | None:
        """Forget history older than the newest `history_revisions` revisions; the revision compacted to."""
        store = self.registry.store
        target = await store.revision() - self._history_revisions
        if target <= store.compact_revision:
            return None
        await store.compact(target)
        log.info("compacted the store's history up to revision %d", target)
        return target

    async def _compact_forever(self) -> None:
        while True:
            await asyncio.sleep(self._compact_interval)
            try:
                await self.compact_once()
            except Exception:
                log.exception("compacting the store failed; trying again in %.0f s", self._compact_interval)


async def run(
    listen: str = "127.0.0.1:8500",
    data_dir: Path = Path(".jishi"),
    *,
    heartbeat: float = 2.0,
    wall: Callable[[], float] = time.time,
) -> None:
    """Open `data_dir/state.db`, serve on `listen` until SIGINT/SIGTERM, then stop gracefully."""
    host, port = parse_listen(listen)
    store = await SqliteStore.open(Path(data_dir) / "state.db")
    loop = asyncio.get_running_loop()
    try:
        server = ControlPlaneServer(Registry(store, wall=wall), host=host, port=port, heartbeat=heartbeat)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        log.info("control plane on http://%s:%d (state in %s)", host, port, data_dir)
        await server.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await store.close()
    log.info("control plane stopped")


def serve(listen: str = "127.0.0.1:8500", data_dir: Path = Path(".jishi")) -> None:
    """Run the control plane in this process until SIGINT/SIGTERM (blocking)."""
    asyncio.run(run(listen, data_dir))
