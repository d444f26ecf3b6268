"""Restart requests: an operator asks (`POST /v1/instances/{service}/{id}/restart`), the agent running it obeys.

The control plane keeps a request at `/jishi/restarts/<service>/<id>` under the instance's lease. Every agent
follows that prefix; the one whose slot runs the instance tells the slot's supervisor to restart it (drain,
graceful stop, a new process in the same slot — `Supervisor.restart`) and then clears the request. Requests for
instances of other agents are left alone. A request is acted on once per write (its key and mod_revision), so
a fresh snapshot after a reconnect does not restart the instance again before the clear has landed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from jishi.agent.supervisor import Supervisor
from jishi.registry.follow import follow
from jishi.registry.model import RESTARTS, RestartRequest
from jishi.registry.protocol import ControlPlane
from jishi.store import Event, EventType, KeyValue

__all__ = ["RestartFollower"]

log = logging.getLogger(__name__)


class RestartFollower:
    """Carries out the restart requests for this agent's instances. `await run()` in an owned task."""

    def __init__(self, cp: ControlPlane, find: Callable[[str, str], Supervisor | None], *, retry: float = 0.5) -> None:
        self._cp, self._find, self._retry = cp, find, retry
        self._done: set[tuple[bytes, int]] = set()
        self._clears: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self.restarted = 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._clear_loop())
            tg.create_task(
                follow(
                    self._cp,
                    RESTARTS,
                    on_snapshot=self._snapshot,
                    on_event=self._event,
                    backoff=(0.5, 30.0),
                    name="restart requests",
                )
            )

    def _snapshot(self, revision: int, kvs: list[KeyValue]) -> None:
        for kv in kvs:
            self._handle(kv)

    def _event(self, event: Event) -> None:
        if event.type is EventType.PUT:
            self._handle(event.kv)

    def _handle(self, kv: KeyValue) -> None:
        mark = (kv.key, kv.mod_revision)
        if mark in self._done:
            return
        try:
            request = RestartRequest.model_validate_json(kv.value)
        except ValueError as exc:
            log.error("ignoring an invalid restart request at %s: %s", kv.key.decode(errors="replace"), exc)
            return
        sup = self._find(request.service, request.instance)
        if sup is None:
            return  # another agent's instance (or one this agent no longer runs)
        self._done.add(mark)
        log.info("restarting %s on request%s", request.instance, f": {request.reason}" if request.reason else "")
        sup.restart(request.reason)
        self.restarted += 1
        self._clears.put_nowait((request.service, request.instance))

    async def _clear_loop(self) -> None:
        while True:
            service, instance = await self._clears.get()
            while True:
                try:
                    await self._cp.clear_restart(service, instance)
                    break
                except Exception as exc:
                    log.warning("cannot clear the restart request of %s yet (%s); retrying", instance, exc)
                    await asyncio.sleep(self._retry)
