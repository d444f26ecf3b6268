"""Service discovery for clients: follow the control plane's instances, keep them in memory and on disk.

Theory of operation
-------------------
Start (`start()` or `async with`): if a `cache_path` is given and holds a copy, its instances are installed at
once, so a process that starts while the control plane is down can still call its peers.

Follow (an owned task): `snapshot("/jishi/instances/")` at revision R replaces everything known, then
`watch(prefix, R+1)` applies each PUT/DELETE as it arrives (a deregistration reaches callers within one event
delivery). The HTTP watch resumes across dropped connections by itself; when it cannot (`CompactedError`: the
history it needs is gone) or the watch ends, a new snapshot is taken. Any other failure is logged and retried
with exponential backoff (`backoff`, 50 ms doubling to 2 s by default); what is known stays in use meanwhile.

Persist: after a change the whole set is written to `cache_path` (debounced by `persist_delay`, in a worker
thread, atomically) and once more on `aclose()`. Only what came from the control plane is written.

Readers: `ready` is set once anything is known (from the cache or the control plane), `synced` once the control
plane answered. `instances(service)` is the instances in rotation (health passing or warning, not draining), by id;
`generation(service)` changes whenever that service's set changes, so a client rebuilds its balancer only then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from pydantic import ValidationError

from jishi.client.cache import DirectoryCache
from jishi.registry.follow import follow
from jishi.registry.model import INSTANCES, Instance
from jishi.registry.protocol import ControlPlane
from jishi.store import Event, EventType, KeyValue

__all__ = ["ServiceDirectory"]

log = logging.getLogger(__name__)


class ServiceDirectory:
    """The instances of every service, followed from the control plane; see the module doc."""

    def __init__(
        self,
        control_plane: ControlPlane,
        *,
        cache_path: Path | str | None = None,
        backoff: tuple[float, float] = (0.05, 2.0),
        persist_delay: float = 0.1,
    ) -> None:
        self.cp = control_plane
        self.cache = DirectoryCache(Path(cache_path)) if cache_path is not None else None
        self.backoff = backoff
        self.persist_delay = persist_delay
        self.revision = 0
        self.source = "none"  # "cache" or "control-plane": where the current set came from
        self.synced = asyncio.Event()  # set once a snapshot from the control plane is installed
        self.ready = asyncio.Event()  # set once anything is known: the cache was read or the control plane answered
        self._by_service: dict[str, dict[str, Instance]] = {}
        self._generations: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- readers -------------------------------------------------------------------------------------------------

    def instances(self, service: str) -> list[Instance]:
        """The instances of `service` in rotation, ordered by id."""
        known = self._by_service.get(service, {})
        return [known[i] for i in sorted(known) if known[i].in_rotation]

    def all_instances(self, service: str) -> list[Instance]:
        """Every known instance of `service`, in rotation or not, ordered by id."""
        known = self._by_service.get(service, {})
        return [known[i] for i in sorted(known)]

    def services(self) -> list[str]:
        return sorted(s for s, known in self._by_service.items() if known)

    def generation(self, service: str) -> int:
        """A number that changes whenever the instances of `service` change."""
        return self._generations.get(service, 0)

    async def wait_changed(self) -> None:
        """Return after the next change of any service's instances."""
        self._changed.clear()
        await self._changed.wait()

    # -- lifecycle -----------------------------------------------------------------------------------------------

    async def start(self) -> ServiceDirectory:
        """Install the cached copy (if any) and start following the control plane."""
        if self._task is not None:
            raise RuntimeError("the service directory is already started")
        if self.cache is not None:
            cached = await asyncio.to_thread(self.cache.load)
            if cached is not None:
                revision, instances = cached
                self._reset(revision, instances)
                self.source = "cache"
                self.ready.set()
                log.info(
                    "service directory: %d instances from the cache %s (revision %d)",
                    len(instances),
                    self.cache.path,
                    revision,
                )
        self._task = asyncio.create_task(self._run(), name="jishi-client-directory")
        return self

    async def aclose(self) -> None:
        """Stop following; write the cache one last time."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if self.source == "control-plane":
            await self._save()

    async def __aenter__(self) -> ServiceDirectory:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- following -----------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._follow(), name="jishi-client-directory-follow")
            if self.cache is not None:
                tg.create_task(self._persist(), name="jishi-client-directory-persist")

    async def _follow(self) -> None:
        await follow(
            self.cp,
            INSTANCES,
            on_snapshot=self._synced,
            on_event=self._apply,
            backoff=self.backoff,
            name="service directory",
        )

    def _synced(self, revision: int, kvs: list[KeyValue]) -> None:
        self._reset(revision, [i for i in (_decode(kv.key, kv.value) for kv in kvs) if i is not None])
        self.source = "control-plane"
        if not self.synced.is_set():
            log.info("service directory: following the control plane from revision %d", revision)
        self.synced.set()
        self.ready.set()

    async def _persist(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.persist_delay)
            self._dirty.clear()
            await self._save()

    async def _save(self) -> None:
        if self.cache is None:
            return
        instances = [i for known in self._by_service.values() for i in known.values()]
        try:
            await asyncio.to_thread(self.cache.save, self.revision, instances)
        except OSError as exc:
            log.error("cannot write the service directory cache %s: %s", self.cache.path, exc)

    # -- state changes -------------------------------------------------------------------------------------------

    def _reset(self, revision: int, instances: Iterable[Instance]) -> None:
        fresh: dict[str, dict[str, Instance]] = {}
        for inst in instances:
            fresh.setdefault(inst.service, {})[inst.id] = inst
        for service in set(fresh) | set(self._by_service):
            if fresh.get(service, {}) != self._by_service.get(service, {}):
                self._bump(service)
        self._by_service = fresh
        self.revision = revision
        self._changed.set()
        self._dirty.set()

    def _apply(self, event: Event) -> None:
        self.revision = max(self.revision, event.kv.mod_revision)
        key = event.kv.key.decode()
        if event.type is EventType.DELETE:
            service, _, instance_id = key[len(INSTANCES) :].partition("/")
            if self._by_service.get(service, {}).pop(instance_id, None) is None:
                return
            log.debug("service directory: %s/%s removed", service, instance_id)
        else:
            inst = _decode(event.kv.key, event.kv.value)
            if inst is None or self._by_service.get(inst.service, {}).get(inst.id) == inst:
                return
            service = inst.service
            self._by_service.setdefault(service, {})[inst.id] = inst
        self._bump(service)
        self._changed.set()
        self._dirty.set()

    def _bump(self, service: str) -> None:
        self._generations[service] = self._generations.get(service, 0) + 1


def _decode(key: bytes, value: bytes) -> Instance | None:
    try:
        return Instance.model_validate_json(value)
    except ValidationError as exc:
        log.error("service directory: ignoring %s, not an instance record: %s", key.decode(errors="replace"), exc)
        return None
