"""The registrar keeps the control plane's copy of this agent's instances equal to the agent's own view.

Supervisors never call the control plane themselves: they `publish` the full current record of their
instance (health and draining included) or `withdraw` it, and return at once. One task pushes the difference
to the control plane, withdrawals first (a dead instance must leave rotation before anything else happens),
and retries whatever failed — so an unreachable control plane delays registrations but never blocks a
supervisor, and after a lost lease `relink()` makes every record register again.

A withdrawal never waits behind anything else: every call gets at most `timeout` seconds, a new withdrawal
abandons a registration or health update under way (it is pushed again right after) and cuts short the pause
after a failed round.

Per instance the push is the smallest call that closes the gap: `register_instance` when the control plane
has no record of this life of the instance (new pid, new lease, changed weight), `set_health` on a health
change, `set_draining` when draining starts, `deregister_instance` on withdrawal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine

from jishi.agent.lease import LeaseKeeper, lease_gone
from jishi.errors import NotFoundError
from jishi.registry.model import AgentInfo, Health, Instance
from jishi.registry.protocol import ControlPlane

__all__ = ["Registrar"]

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (service, instance id)
AGENT: Key = ("", "")  # the agent's own record, pushed right after the withdrawals
CALL_TIMEOUT = 1.0  # seconds one instance's update may take before it is abandoned and retried
_MUTABLE = {"health", "health_output", "health_since", "draining"}


def _same_life(a: Instance, b: Instance) -> bool:
    """Whether `b` differs from `a` only in what set_health / set_draining can change."""
    if a.draining and not b.draining:
        return False
    return a.model_dump(exclude=_MUTABLE) == b.model_dump(exclude=_MUTABLE)


class _Preempted(Exception):
    """A withdrawal arrived while a lesser update was under way."""


class Registrar:
    def __init__(
        self, cp: ControlPlane, lease: LeaseKeeper, *, retry: float = 0.25, timeout: float = CALL_TIMEOUT
    ) -> None:
        self._cp, self._lease, self._retry, self._timeout = cp, lease, retry, timeout
        self._want: dict[Key, Instance | None] = {}
        self._have: dict[Key, Instance | None] = {}  # what the control plane holds, as far as we know
        self._agent: AgentInfo | None = None
        self._agent_synced = False
        self._failing = False  # the last push failed: log further failures quietly until one succeeds
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()  # a withdrawal arrived since the last pick
        self._progress = asyncio.Condition()

    def publish(self, instance: Instance) -> None:
        self._want[(instance.service, instance.id)] = instance
        self._wake.set()

    def withdraw(self, service: str, instance_id: str) -> None:
        self._want[(service, instance_id)] = None
        self._urgent.set()
        self._wake.set()

    def set_agent(self, info: AgentInfo) -> None:
        self._agent, self._agent_synced = info, False
        self._wake.set()

    def relink(self) -> None:
        """A new lease: the old one took every record with it, so register everything again."""
        self._have = dict.fromkeys(self._have)
        self._agent_synced = False
        self._wake.set()

    def synced(self, service: str, instance_id: str) -> bool:
        key = (service, instance_id)
        return self._want.get(key) == self._have.get(key)

    async def settled(self, service: str, instance_id: str, *, within: float) -> bool:
        """Wait until the control plane holds what was last published for the instance; False on timeout."""
        async with self._progress:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait_for(lambda: self.synced(service, instance_id)), within)
        return self.synced(service, instance_id)

    def _all_synced(self) -> bool:
        agent_done = self._agent is None or self._agent_synced
        return agent_done and all(v == self._have.get(k) for k, v in self._want.items())

    async def settled_all(self, within: float) -> bool:
        """Wait until the control plane holds every record as published; False on timeout."""
        async with self._progress:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait_for(self._all_synced), within)
        return self._all_synced()

    async def run(self) -> None:
        pause = self._retry
        while True:
            await self._wake.wait()
            self._wake.clear()
            lease_id = await self._lease.current()
            ok = await self._push(lease_id)
            async with self._progress:
                self._progress.notify_all()
            if ok:
                pause = self._retry
                if self._failing:
                    log.warning("the control plane is up to date with this agent's instances again")
                    self._failing = False
            else:
                with contextlib.suppress(TimeoutError):  # a withdrawal does not wait out the pause
                    await asyncio.wait_for(self._urgent.wait(), pause)
                pause = min(pause * 2, 1.0)
                self._wake.set()

    def _failed(self, message: str, *args: object) -> None:
        log.log(logging.DEBUG if self._failing else logging.WARNING, message, *args)
        self._failing = True

    async def _push(self, lease_id: int) -> bool:
        ok = True
        tried: set[Key] = set()
        while (key := self._pick(tried)) is not None:
            try:
                preemptible = key == AGENT or self._want[key] is not None
                await self._bounded(self._sync(key, lease_id), preemptible=preemptible)
            except _Preempted:
                continue  # the withdrawal goes now, this one again after it
            except Exception as exc:
                if self._lease.lease_id != lease_id:  # a new lease meanwhile: everything goes again under it
                    return ok
                ok = False
                if lease_gone(exc):
                    self._lease.invalidate(lease_id)
                    return False
                reason = str(exc) or type(exc).__name__
                what = "the agent record" if key == AGENT else "instance {}/{}".format(*key)
                self._failed("could not update %s on the control plane (%s); retrying", what, reason)
            if self._lease.lease_id != lease_id:  # a new lease meanwhile: this went to the old one
                self._forget(key)
                return ok
            tried.add(key)
        for key in [k for k, v in self._want.items() if v is None and self._have.get(k) is None]:
            del self._want[key]
            self._have.pop(key, None)
        return ok

    def _forget(self, key: Key) -> None:
        if key == AGENT:
            self._agent_synced = False
        else:
            self._have[key] = None

    def _pick(self, tried: set[Key]) -> Key | None:
        """The next update to push: withdrawals first, then the agent record, then registrations and changes."""
        self._urgent.clear()
        pending = [k for k, v in self._want.items() if v != self._have.get(k) and k not in tried]
        withdrawals = [k for k in pending if self._want[k] is None]
        if self._agent is not None and not self._agent_synced and AGENT not in tried:
            withdrawals.append(AGENT)
        first = withdrawals or pending
        return first[0] if first else None

    async def _bounded(self, call: Coroutine[object, object, None], *, preemptible: bool) -> None:
        """Run one update for at most `timeout` s; raises _Preempted if a withdrawal arrives first (preemptible)."""
        work = asyncio.ensure_future(call)
        urgent = asyncio.ensure_future(self._urgent.wait()) if preemptible else None
        waiting = {work} if urgent is None else {work, urgent}
        try:
            done, _ = await asyncio.wait(waiting, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
        if work in done:
            return work.result()
        if urgent is not None and urgent in done:
            raise _Preempted
        raise TimeoutError(f"no answer within {self._timeout:.1f} s")

    async def _sync(self, key: Key, lease_id: int) -> None:
        if key == AGENT:
            info = self._agent
            assert info is not None
            await self._cp.register_agent(info, lease_id)
            self._agent_synced = info is self._agent
            return
        want, have = self._want[key], self._have.get(key)
        if want is None:
            with contextlib.suppress(NotFoundError):
                await self._cp.deregister_instance(*key)
            self._have[key] = None
            return
        if have is None or not _same_life(have, want):
            await self._register(want, lease_id)
            return
        try:
            if (want.health, want.health_output) != (have.health, have.health_output):
                await self._cp.set_health(want.service, want.id, want.health, want.health_output)
            if want.draining and not have.draining:
                await self._cp.set_draining(want.service, want.id)
        except NotFoundError:  # removed behind our back (e.g. critical too long): register this life again
            await self._register(want, lease_id)
            return
        self._have[key] = want

    async def _register(self, want: Instance, lease_id: int) -> None:
        await self._cp.register_instance(want, lease_id)
        if want.health is not Health.CRITICAL:
            await self._cp.set_health(want.service, want.id, want.health, want.health_output)
        if want.draining:
            await self._cp.set_draining(want.service, want.id)
        self._have[(want.service, want.id)] = want
