"""The gateway follows the control plane: snapshot, then watch; persists what it learned; registers itself.

Theory of operation
-------------------
Start: `load_snapshot()` reads the last-known-good snapshot from `state_dir/snapshot.json` (if any) and
installs its routing table, so the gateway serves at once even when the control plane is down — including
after its own restart.

Follow (`run`): `snapshot("/jishi/")` at revision R, install the table, then `watch("/jishi/", R+1)` and
rebuild the table on every event that touches a route or an instance (a change reaches routing within one
event delivery: no polling, no batching delay). The HTTP watch resumes across dropped connections and server
restarts by itself; when it cannot (the history it needs was compacted: `CompactedError`) the follower takes a
new snapshot. Any other failure is logged and retried with exponential backoff (50 ms doubling to 2 s); the
table in memory stays as it was meanwhile.

Persist: after each change the snapshot is written (debounced by `persist_delay`, in a worker thread, atomic).
Only state learned from the control plane is persisted.

Register: a `GatewayInfo` (id, URL, pid) under a lease with `lease_ttl`, kept alive every ttl/3; when the
lease is lost (control-plane restart, long partition) it grants a new one and registers again. On stop the
lease is revoked so the gateway leaves the registry at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from jishi.errors import LeaseNotFoundError
from jishi.gateway.proxy import Proxy
from jishi.gateway.snapshot import SnapshotFile
from jishi.gateway.view import RegistryView
from jishi.registry.follow import follow
from jishi.registry.model import PREFIX, GatewayInfo
from jishi.registry.protocol import ControlPlane
from jishi.store import Event, KeyValue

__all__ = ["Follower"]

log = logging.getLogger(__name__)


class Follower:
    """Keeps `proxy`'s routing table in step with the control plane; see the module doc."""

    def __init__(
        self,
        control_plane: ControlPlane,
        proxy: Proxy,
        state_dir: Path,
        *,
        gateway_id: str,
        url: str,
        lease_ttl: float = 10.0,
        persist_delay: float = 0.2,
        backoff: tuple[float, float] = (0.05, 2.0),
    ) -> None:
        self.cp = control_plane
        self.proxy = proxy
        self.snapshot = SnapshotFile(state_dir / "snapshot.json")
        self.gateway_id = gateway_id
        self.url = url
        self.lease_ttl = lease_ttl
        self.persist_delay = persist_delay
        self.backoff = backoff
        self.view = RegistryView()
        self.synced = asyncio.Event()  # set once the first snapshot from the control plane is installed
        self.registered = asyncio.Event()
        self.changes = 0  # tables installed so far (tests and status read it)
        self._dirty = asyncio.Event()
        self._lease: int | None = None
        self._started = time.time()

    def load_snapshot(self) -> bool:
        """Install the on-disk snapshot, if there is a valid one; True if it was installed."""
        data = self.snapshot.load()
        if data is None:
            return False
        try:
            view = RegistryView.restore(data)
        except ValueError as exc:
            log.error("ignoring routing snapshot %s: %s", self.snapshot.path, exc)
            return False
        self.view = view
        self._install()
        log.info(
            "serving from the saved snapshot %s (revision %d: %d routes, %d instances)",
            self.snapshot.path,
            view.revision,
            len(view.routes),
            len(view.instances),
        )
        return True

    async def run(self) -> None:
        """Follow, persist and register until cancelled."""
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._follow(), name="gateway-follow")
                tg.create_task(self._persist(), name="gateway-persist")
                tg.create_task(self._register(), name="gateway-register")
        finally:
            await self._leave()

    def _install(self) -> None:
        self.proxy.set_table(self.view.table(previous=self.proxy.table))
        self.changes += 1

    async def _follow(self) -> None:
        await follow(
            self.cp, PREFIX, on_snapshot=self._reset, on_event=self._apply, backoff=self.backoff, name="gateway"
        )

    def _reset(self, revision: int, kvs: list[KeyValue]) -> None:
        self.view.reset(revision, kvs)
        self._install()
        self._dirty.set()
        if not self.synced.is_set():
            log.info("following the control plane from revision %d", revision)
        self.synced.set()

    def _apply(self, event: Event) -> None:
        if self.view.apply(event):
            self._install()
            self._dirty.set()

    async def _persist(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.persist_delay)
            self._dirty.clear()
            data = self.view.dump()
            try:
                await asyncio.to_thread(self.snapshot.save, data)
            except OSError as exc:
                log.error("cannot write the routing snapshot %s: %s", self.snapshot.path, exc)

    async def _register(self) -> None:
        info = GatewayInfo(id=self.gateway_id, url=self.url, pid=os.getpid(), started_at=self._started)
        delay = self.backoff[0]
        while True:
            try:
                if self._lease is None:
                    self._lease = await self.cp.grant_lease(self.lease_ttl)
                if not self.registered.is_set():
                    await self.cp.register_gateway(info, self._lease)
                    log.info("registered gateway %s (%s) under lease %d", info.id, info.url, self._lease)
                    self.registered.set()
                    delay = self.backoff[0]
                await asyncio.sleep(self.lease_ttl / 3)
                await self.cp.keepalive(self._lease)
            except LeaseNotFoundError:
                log.warning("gateway lease %s is gone; registering again", self._lease)
                self._lease = None
                self.registered.clear()
            except Exception as exc:
                log.warning("cannot register with the control plane (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff[1])

    async def _leave(self) -> None:
        lease, self._lease = self._lease, None
        if lease is None:
            return
        try:
            async with asyncio.timeout(1.0):
                await self.cp.revoke_lease(lease)
        except Exception as exc:
            log.info("could not revoke gateway lease %d on stop (it expires by itself): %s", lease, exc)
