"""One supervised slot: runs one instance process at a time, checks its health, restarts it when it crashes.

The loop of a slot (its states are `jishi.core.lifecycle.SlotState`):

1. take a port (the slot's previous one when still free), spawn the process, publish the instance CRITICAL;
2. probe its health every ~50 ms until the first pass, then every `interval`; publish only transitions;
3. if the process exits on its own: withdraw the instance at once (out of rotation well under a second),
   kill whatever it left in its process group, wait the backoff delay, and go to 1 (same id, new pid,
   restarts + 1);
4. if asked to stop or to replace: publish draining, wait `drain_seconds` (if it was serving), SIGTERM the
   group, SIGKILL after `stop_timeout`, withdraw. A replacement then goes to 1 with the new spec; a stop ends.
   An operator's restart (`restart()`) is a replacement by the same spec.

Each of these is also an event for the event log (`emit`, never blocking): instance.started (pid, port),
instance.exited (exit code or signal, the backoff delay), instance.restarted (how long it was down, the
backoff, the restart count), instance.health (old → new state and the check's output), instance.stopped,
instance.failed (could not be started at all).

The supervisor talks to the control plane only through the `Registrar`, so an unreachable control plane never
stalls it. Cancelling `run()` kills the process group at once: the slot never leaves an orphan behind.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from jishi.agent.checks import probe
from jishi.agent.groups import GroupLedger
from jishi.agent.ports import PortAllocator
from jishi.agent.process import kill_group, render_launch, spawn, terminate
from jishi.agent.registrar import Registrar
from jishi.core.backoff import RestartBackoff
from jishi.core.health import HealthMachine, State, Transition
from jishi.core.lifecycle import Event, Lifecycle, SlotState
from jishi.core.reconcile import Slot
from jishi.errors import ProcessError
from jishi.registry.model import EventRecord, Health, Instance, ServiceSpec

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

FAST_CHECK = 0.05  # seconds between probes until the first pass after a start


class Supervisor:
    def __init__(
        self,
        spec: ServiceSpec,
        index: int,
        *,
        revision: str,
        instance_id: str,
        agent_id: str,
        registrar: Registrar,
        ports: PortAllocator,
        log_dir: Path,
        rng: random.Random,
        on_change: Callable[[], None] = lambda: None,
        groups: GroupLedger | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        emit: Callable[[EventRecord], None] | None = None,
    ) -> None:
        self.spec, self.index, self.revision, self.instance_id = spec, index, revision, instance_id
        self._emit = emit
        self.agent_id, self.host = agent_id, ports.host
        self._registrar, self._ports, self._log_dir, self._rng = registrar, ports, log_dir, rng
        self._on_change, self._groups, self._clock, self._wall = on_change, groups, clock, wall
        self.lifecycle = Lifecycle()
        self.backoff = RestartBackoff(spec.restart)
        self.health: HealthMachine | None = None  # of the running process
        self.restarts = 0
        self.record: Instance | None = None  # what is published for the running process
        self.pid: int | None = None
        self._stop = False
        self._next: tuple[ServiceSpec, str] | None = None  # a pending replacement: spec and its revision
        self._request = asyncio.Event()
        self._retuned = asyncio.Event()  # a new restart policy: a backoff pause under way is capped anew
        self._down: tuple[float, float, str] | None = None  # a restart is due: since when (clock), delay, why

    # --- commands from the agent (return at once; the slot's task carries them out)
    def stop(self) -> None:
        self._stop = True
        self._request.set()

    def replace(self, spec: ServiceSpec, revision: str) -> None:
        self._next = (spec, revision)
        self._request.set()

    def restart(self, reason: str = "") -> None:
        """An operator's restart: drain and stop the process gracefully, start a new one in this slot."""
        if self._stop:
            return
        if self._next is None:
            self._next = (self.spec, self.revision)
        self._down = (self._clock(), 0.0, f"on request{': ' + reason if reason else ''}")
        self._request.set()

    def update(self, spec: ServiceSpec) -> None:
        """A change that needs no new process (weight, backup, checks, restart policy): apply it in place."""
        if spec == self.spec:
            return
        old, self.spec = self.spec, spec
        check = spec.health_check
        if self.health is not None and (check.rise, check.fall) != (self.health.rise, self.health.fall):
            self.health = self.health.retuned(check)
        if spec.restart != old.restart:
            b = self.backoff
            self.backoff = RestartBackoff(spec.restart, crashes=b.crashes, healthy_since=b.healthy_since)
            self._retuned.set()
        if self.record is not None:
            self._publish(
                weight=spec.weight,
                backup=spec.backup,
                deregister_critical_after=check.deregister_critical_after,
            )

    def view(self) -> Slot:
        """This slot as the reconcile planner sees it; a pending stop or replacement counts as STOPPING."""
        state = self.lifecycle.state
        if (self._stop or self._next is not None) and state is not SlotState.STOPPED:
            state = SlotState.STOPPING
        revision = self._next[1] if self._next is not None else self.revision
        return Slot(self.spec.name, self.index, revision, state)

    # --- the slot's task
    async def run(self) -> None:
        slot_key = f"{self.spec.name}/{self.index}"
        try:
            while not self.lifecycle.done:
                self._request.clear()
                if self._stop:
                    stopping = self.lifecycle.state is SlotState.STOPPING
                    self._fire(Event.STOPPED if stopping else Event.STOP)
                    break
                if self._next is not None:
                    (self.spec, self.revision), self._next = self._next, None
                    self.backoff = RestartBackoff(self.spec.restart)
                proc = await self._start(self._ports.acquire(slot_key))
                if proc is None:
                    await self._pause(self.backoff.crashed(self._clock(), self._rng))
                elif await self._supervise(proc):
                    await self._stop_process(proc)
                else:
                    await self._crashed(proc)
        finally:
            self._ports.release(slot_key)
            if self.pid is not None:  # cancelled with a process still running: no orphans
                kill_group(self.pid, signal.SIGKILL)
                self._ended()
                self._registrar.withdraw(self.spec.name, self.instance_id)

    async def _start(self, port: int) -> asyncio.subprocess.Process | None:
        launch = render_launch(self.spec, instance_id=self.instance_id, port=port, log_dir=self._log_dir)
        try:
            proc = await spawn(launch)
        except ProcessError as exc:
            log.error("instance %s: %s", self.instance_id, exc)
            self._event("instance.failed", f"could not start: {exc}", "error")
            self._fire(Event.FAILED)
            self.restarts += 1
            return None
        self.pid = proc.pid
        if self._groups is not None:
            self._groups.add(self.instance_id, proc.pid)
        self._fire(Event.SPAWNED)
        now = self._wall()
        check = self.spec.health_check
        self.record = Instance(
            id=self.instance_id,
            service=self.spec.name,
            address=self.host,
            port=port,
            pid=proc.pid,
            agent=self.agent_id,
            health=Health.CRITICAL,
            health_output="starting",
            health_since=now,
            weight=self.spec.weight,
            backup=self.spec.backup,
            started_at=now,
            restarts=self.restarts,
            deregister_critical_after=check.deregister_critical_after,
        )
        self._registrar.publish(self.record)
        log.info("instance %s started: pid %d, port %d", self.instance_id, proc.pid, port)
        where = {"pid": str(proc.pid), "port": str(port)}
        if self._down is None:
            self._event("instance.started", f"started: pid {proc.pid}, port {port}", **where)
        else:
            since, delay, why = self._down
            self._event(
                "instance.restarted",
                f"restarted {why} after {self._clock() - since:.2f} s down (backoff {delay:.2f} s, "
                f"restart {self.restarts}): pid {proc.pid}, port {port}",
                **where,
                restarts=str(self.restarts),
                backoff=f"{delay:.3f}",
            )
            self._down = None
        return proc

    async def _supervise(self, proc: asyncio.subprocess.Process) -> bool:
        """Run health checks until the process exits (False) or a stop/replace is requested (True)."""
        async with asyncio.TaskGroup() as tg:
            checks = tg.create_task(self._check_loop(proc))
            exited = tg.create_task(proc.wait())
            requested = tg.create_task(self._request.wait())
            await asyncio.wait({exited, requested}, return_when=asyncio.FIRST_COMPLETED)
            checks.cancel()
            requested.cancel()
            if not exited.done():
                exited.cancel()
                return True
        return False

    async def _check_loop(self, proc: asyncio.subprocess.Process) -> None:
        self.health = HealthMachine.from_spec(self.spec.health_check)
        first_pass_seen = False
        while proc.returncode is None:
            assert self.record is not None
            outcome, output = await probe(self.spec.health_check, self.host, self.record.port)
            if proc.returncode is not None:
                return
            transition = self.health.observe(outcome, self._clock(), output)  # rise/fall of the current spec
            if transition is not None:
                self._health_changed(transition)
            first_pass_seen = first_pass_seen or self.health.in_rotation
            await asyncio.sleep(self.spec.health_check.interval if first_pass_seen else FAST_CHECK)

    def _health_changed(self, t: Transition) -> None:
        log.info("instance %s is %s: %s", self.instance_id, t.new.value, t.output)
        level = "info" if t.new is State.PASSING else "warning" if t.new is State.WARNING else "error"
        self._event(
            "instance.health", f"{t.old.value} → {t.new.value}: {t.output}", level, old=t.old.value, new=t.new.value
        )
        self._publish(health=Health(t.new.value), health_output=t.output, health_since=self._wall())
        if t.new is State.CRITICAL:
            self.backoff.unhealthy(t.at)
            self._fire(Event.UNREADY)
        else:
            self.backoff.healthy(t.at)
            self._fire(Event.READY)

    async def _crashed(self, proc: asyncio.subprocess.Process) -> None:
        self._registrar.withdraw(self.spec.name, self.instance_id)  # out of rotation first
        kill_group(proc.pid)  # whatever it left behind in its group
        self._ended()
        self._fire(Event.EXITED)
        delay = self.backoff.crashed(self._clock(), self._rng)
        self.restarts += 1
        how = _describe_exit(proc.returncode)
        log.warning(
            "instance %s exited with %s; restarting in %.2f s (restart %d)", self.instance_id, how, delay, self.restarts
        )
        self._event(
            "instance.exited",
            f"exited with {how} (pid {proc.pid}); restarting in {delay:.2f} s",
            "error",
            pid=str(proc.pid),
            exit=how,
        )
        self._down = (self._clock(), delay, "after a crash")
        await self._pause(delay)

    async def _stop_process(self, proc: asyncio.subprocess.Process) -> None:
        was_serving = self.lifecycle.serving
        self._fire(Event.STOP)
        self.backoff.forget_health()
        self._publish(draining=True)
        spec = self.spec
        if was_serving and spec.drain_seconds > 0:
            await self._registrar.settled(spec.name, self.instance_id, within=1.0)
            await asyncio.sleep(spec.drain_seconds)
        code = await terminate(proc, spec.stop_timeout)
        log.info("instance %s stopped (%s)", self.instance_id, _describe_exit(code))
        self._event("instance.stopped", f"stopped (pid {proc.pid}, {_describe_exit(code)})", pid=str(proc.pid))
        self._ended()
        self._registrar.withdraw(spec.name, self.instance_id)
        if self._next is None or self._stop:
            self._fire(Event.STOPPED)

    def _ended(self) -> None:
        """The process and its whole group are gone (SIGKILLed): forget them."""
        if self._groups is not None:
            self._groups.remove(self.instance_id)
        self.pid, self.record, self.health = None, None, None

    async def _pause(self, seconds: float) -> None:
        """Wait out a backoff delay; a stop or replacement ends it early, a new restart policy caps what is left
        at its max_delay."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self._request.is_set() and (left := deadline - loop.time()) > 0:
            self._retuned.clear()
            waiters = [asyncio.ensure_future(self._request.wait()), asyncio.ensure_future(self._retuned.wait())]
            try:
                await asyncio.wait(waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if self._retuned.is_set():
                deadline = min(deadline, loop.time() + self.backoff.policy.max_delay)

    def _publish(self, **changes: object) -> None:
        if self.record is not None:
            self.record = self.record.model_copy(update=changes)
            self._registrar.publish(self.record)

    def _event(self, kind: str, reason: str, level: str = "info", **labels: str) -> None:
        if self._emit is None:
            return
        try:
            record = EventRecord.model_validate(
                {
                    "time": self._wall(),
                    "kind": kind,
                    "subject": f"{self.spec.name}/{self.instance_id}",
                    "reason": reason,
                    "level": level,
                    "labels": {"service": self.spec.name, "instance": self.instance_id, **labels},
                }
            )
            self._emit(record)
        except Exception:  # an event must never break supervision
            log.exception("instance %s: could not emit a %s event", self.instance_id, kind)

    def _fire(self, event: Event) -> None:
        self.lifecycle.fire(event)
        self._on_change()


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"
