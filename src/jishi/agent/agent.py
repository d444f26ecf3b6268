"""The agent: follows the desired services and runs the instances this host owes them.

Tasks, all owned by one TaskGroup and cancelled and awaited on shutdown:

- follower (`jishi.agent.follower`): the desired services from the control plane, saved to
  `data_dir/services.json` so that a start while the control plane is down runs what ran before;
- reconciler: on every change (and every second) asks `jishi.core.reconcile.plan` what to start, stop or
  replace, and tells the slot supervisors;
- lease keeper and registrar: the one lease and the control plane's copy of every instance;
- one supervisor task per slot;
- the event sender (`jishi.registry.events.EventBuffer`): the supervisors' instance events, sent in the
  background so that an unreachable control plane never holds up supervision;
- the restart follower (`jishi.agent.restarts`): operators' restart requests for this agent's instances.

Shutdown (`stop()`): every slot drains and stops in parallel, the registrar flushes the withdrawals, the
events still buffered get a second to reach the control plane, the lease is revoked. Instance ids are
`<service>-<agent hash6>-<slot>`: unique across agents, stable per slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path

from jishi.agent.follower import ServiceFollower
from jishi.agent.groups import GroupLedger, end_leftovers
from jishi.agent.lease import LeaseKeeper
from jishi.agent.ports import PortAllocator
from jishi.agent.registrar import Registrar
from jishi.agent.restarts import RestartFollower
from jishi.agent.supervisor import Supervisor
from jishi.core.reconcile import ActionKind, Desired, plan
from jishi.registry.events import EventBuffer
from jishi.registry.model import AgentInfo, ServiceSpec
from jishi.registry.protocol import ControlPlane

__all__ = ["Agent", "instance_id", "revision_of"]

log = logging.getLogger(__name__)

DEFAULT_TTL = 3.0
RECONCILE_EVERY = 1.0
SHUTDOWN_GRACE = 5.0  # beyond the longest drain + stop_timeout


def revision_of(spec: ServiceSpec) -> str:
    """Fingerprint of what needs a new process when it changes: command, env, working directory."""
    text = json.dumps([spec.command, sorted(spec.env.items()), spec.cwd])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def instance_id(service: str, agent_id: str, index: int) -> str:
    return f"{service}-{hashlib.sha1(agent_id.encode()).hexdigest()[:6]}-{index}"


def _load_agent_id(data_dir: Path) -> str:
    """The id kept in `data_dir/agent-id`, created on first start (so restarts keep instance ids)."""
    path = data_dir / "agent-id"
    with contextlib.suppress(FileNotFoundError):
        stored = path.read_text().strip()
        if stored:
            return stored
    host = re.sub(r"[^a-z0-9-]", "-", socket.gethostname().lower())[:40].strip("-") or "host"
    new = f"{host}-{secrets.token_hex(3)}"
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(new + "\n")
    return new


class Agent:
    """Runs instances of the desired services on this host. `await run()` until `stop()`."""

    def __init__(
        self,
        cp: ControlPlane,
        data_dir: Path,
        agent_id: str | None = None,
        *,
        host: str = "127.0.0.1",
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.cp, self.data_dir = cp, Path(data_dir)
        self.id = agent_id or _load_agent_id(self.data_dir)
        self.log_dir = self.data_dir / "logs"
        self._rng = rng or random.Random()
        self._clock, self._wall = clock, wall
        self.ports = PortAllocator(host)
        self.groups = GroupLedger(self.data_dir / "instances.json")
        self.lease = LeaseKeeper(cp, self._lease_ttl, self._lease_granted, moved=self._records_moved)
        self.registrar = Registrar(cp, self.lease)
        self.slots: dict[tuple[str, int], Supervisor] = {}
        self._tasks: dict[Supervisor, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()  # no slot task is left
        self._dirty = asyncio.Event()
        self.follower = ServiceFollower(cp, self.data_dir / "services.json", self._dirty.set)
        self.events = EventBuffer(cp)
        self.restarts = RestartFollower(cp, self._slot_of)
        self._shutdown = asyncio.Event()
        self.ready = asyncio.Event()  # holds a lease and follows the services

    @property
    def desired(self) -> dict[str, ServiceSpec]:
        """The services this agent follows, by name."""
        return self.follower.desired

    def stop(self) -> None:
        """Begin a graceful shutdown (safe from a signal handler)."""
        self._shutdown.set()

    async def run(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.registrar.set_agent(AgentInfo(id=self.id, host=self.ports.host, pid=os.getpid(), started_at=self._wall()))
        log.info("agent %s starting (data in %s)", self.id, self.data_dir)
        await asyncio.to_thread(end_leftovers, self.groups.path)  # what a killed previous run left behind
        try:
            async with asyncio.TaskGroup() as tg:
                background = [
                    tg.create_task(self.follower.run()),
                    tg.create_task(self._keep_lease()),
                    tg.create_task(self.registrar.run()),
                    tg.create_task(self.events.run()),
                    tg.create_task(self.restarts.run()),
                ]
                reconciler = tg.create_task(self._reconcile_loop(tg))
                await self._shutdown.wait()
                reconciler.cancel()
                await self._stop_all()
                for task in background:
                    task.cancel()
        finally:
            await self.follower.flush()
            await self.events.flush(1.0)
            await self.lease.revoke()
            log.info("agent %s stopped", self.id)

    def _slot_of(self, service: str, instance: str) -> Supervisor | None:
        """The supervisor of this agent's instance `instance` of `service`, if it runs one."""
        for (name, _), sup in self.slots.items():
            if name == service and sup.instance_id == instance:
                return sup
        return None

    async def _keep_lease(self) -> None:
        await self.follower.synced.wait()  # the TTL comes from the services' lease_ttl
        await self.lease.run()

    def _lease_ttl(self) -> float:
        return min((s.lease_ttl for s in self.desired.values()), default=DEFAULT_TTL)

    async def _lease_granted(self, lease_id: int) -> None:
        self.registrar.relink()
        self.ready.set()

    async def _records_moved(self, within: float) -> bool:
        return await self.registrar.settled_all(within)

    # --- reconciliation
    async def _reconcile_loop(self, tg: asyncio.TaskGroup) -> None:
        await self.follower.synced.wait()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), RECONCILE_EVERY)
            self._dirty.clear()
            self.reconcile(tg)

    def reconcile(self, tg: asyncio.TaskGroup) -> None:
        """One round: compare desired with the slots and carry out the plan."""
        self.lease.retune()
        revisions = {name: revision_of(spec) for name, spec in self.desired.items()}
        desired = {name: Desired(spec.instances, revisions[name]) for name, spec in self.desired.items()}
        for (service, _), sup in self.slots.items():
            if service in self.desired and sup.revision == revisions[service]:
                sup.update(self.desired[service])
        for action in plan(desired, [sup.view() for sup in self.slots.values()]):
            key = (action.service, action.index)
            if action.kind is ActionKind.START:
                self._start_slot(tg, self.desired[action.service], action.index, revisions[action.service])
            elif action.kind is ActionKind.STOP:
                log.info("stopping %s slot %d", *key)
                self.slots[key].stop()
            else:
                log.info("replacing %s slot %d with the new spec", *key)
                self.slots[key].replace(self.desired[action.service], revisions[action.service])

    def _start_slot(self, tg: asyncio.TaskGroup, spec: ServiceSpec, index: int, revision: str) -> None:
        sup = Supervisor(
            spec,
            index,
            revision=revision,
            instance_id=instance_id(spec.name, self.id, index),
            agent_id=self.id,
            registrar=self.registrar,
            ports=self.ports,
            log_dir=self.log_dir,
            rng=self._rng,
            on_change=self._dirty.set,
            groups=self.groups,
            clock=self._clock,
            wall=self._wall,
            emit=self.events.emit,
        )
        self.slots[(spec.name, index)] = sup
        self._tasks[sup] = tg.create_task(self._run_slot(sup))

    async def _run_slot(self, sup: Supervisor) -> None:
        try:
            await sup.run()
        except Exception:
            log.exception("supervisor of %s failed; its process was killed", sup.instance_id)
        finally:
            if self.slots.get((sup.spec.name, sup.index)) is sup:
                del self.slots[(sup.spec.name, sup.index)]
            self._tasks.pop(sup, None)
            if not self.slots:
                self._idle.set()
            self._dirty.set()

    async def _stop_all(self) -> None:
        sups = list(self.slots.values())
        for sup in sups:
            sup.stop()
        if not sups:
            return
        grace = max(s.spec.drain_seconds + s.spec.stop_timeout for s in sups) + SHUTDOWN_GRACE
        log.info("stopping %d instances (up to %.1f s)", len(sups), grace)
        self._idle.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
        for sup, task in list(self._tasks.items()):
            log.error("instance %s did not stop within %.1f s; killing it", sup.instance_id, grace)
            task.cancel()
        with contextlib.suppress(TimeoutError):  # let the withdrawals reach the control plane
            async with asyncio.timeout(1.0):
                for sup in sups:
                    await self.registrar.settled(sup.spec.name, sup.instance_id, within=1.0)
