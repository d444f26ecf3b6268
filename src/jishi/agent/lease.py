"""The agent's one lease: granted once, kept alive every TTL/3, replaced when lost.

A keep-alive gets at most TTL/3 to answer; one that does not is abandoned and retried at once, so a slow
control plane cannot hold the keeper past the TTL (last renewal + TTL/3 wait + TTL/3 timeout + TTL/3 retry).

Every instance the agent registers (and its own AgentInfo) hangs on this lease, so if the agent or its host
disappears, the control plane drops them all after the TTL. If the lease is lost while the agent lives — the
control plane was down longer than the TTL, say — the keeper grants a new one and calls `on_granted`, which
re-registers everything. While the control plane is unreachable the keeper only logs and retries; the
instances keep running.

When the wanted TTL changes (the smallest `lease_ttl` of the services), the keeper moves to a new lease: it
grants one with the new TTL, calls `on_granted` (everything registers again under it), waits briefly until
`moved` says the records are across, and revokes the old lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from jishi.errors import ControlPlaneError, LeaseNotFoundError
from jishi.registry.protocol import ControlPlane

__all__ = ["LeaseKeeper", "lease_gone"]

log = logging.getLogger(__name__)


def lease_gone(exc: BaseException) -> bool:
    """Whether `exc` says the lease does not exist any more (in-process or as an HTTP error code)."""
    return isinstance(exc, LeaseNotFoundError) or (
        isinstance(exc, ControlPlaneError) and exc.code == LeaseNotFoundError.code
    )


class LeaseKeeper:
    """Owns the lease. Run `run()` as a task; `current()` waits for a live lease id."""

    def __init__(
        self,
        cp: ControlPlane,
        ttl: Callable[[], float],
        on_granted: Callable[[int], Awaitable[None]],
        *,
        moved: Callable[[float], Awaitable[object]] | None = None,
        retry: float = 0.5,
    ) -> None:
        self._cp, self._ttl, self._on_granted, self._retry = cp, ttl, on_granted, retry
        self._moved = moved  # waits up to the given seconds until every record hangs on the current lease
        self.lease_id: int | None = None
        self.ttl = 0.0
        self._unreachable = False  # the last call failed: log the next failures quietly until one succeeds
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._pause = 0.0  # until the next keep-alive

    async def current(self) -> int:
        """The live lease id, waiting until there is one."""
        while self.lease_id is None:
            await self._ready.wait()
        return self.lease_id

    def invalidate(self, lease_id: int) -> None:
        """A call found `lease_id` gone: grant a new lease now (ignored if it was replaced already)."""
        if self.lease_id == lease_id:
            log.warning("lease %x is gone; granting a new one and registering every instance again", lease_id)
            self._lost()

    def retune(self) -> None:
        """The wanted TTL may have changed: if it has, move to a new lease now rather than at the next keep-alive."""
        if self.lease_id is not None and self._ttl() != self.ttl:
            self._wake.set()

    def _lost(self) -> None:
        self.lease_id = None
        self._ready.clear()
        self._wake.set()

    async def run(self) -> None:
        while True:
            if self.lease_id is None:
                await self._grant()
                continue
            await self._sleep(self._pause)
            lease_id = self.lease_id
            if lease_id is None or (self._ttl() != self.ttl and await self._switch(lease_id)):
                continue
            self._pause = await self._renew(lease_id)

    async def _renew(self, lease_id: int) -> float:
        """One keep-alive of at most TTL/3; returns the pause before the next one (0: retry at once)."""
        limit = self.ttl / 3
        try:
            await asyncio.wait_for(self._cp.keepalive(lease_id), limit)
        except TimeoutError:
            self._failed("keep-alive of lease %x got no answer within %.2f s; retrying at once", lease_id, limit)
            return 0.0
        except Exception as exc:
            if lease_gone(exc):
                self.invalidate(lease_id)
                return 0.0
            self._failed("keep-alive of lease %x failed (%s); instances keep running, retrying", lease_id, exc)
            return min(self._retry, self.ttl / 6)
        self._recovered()
        return limit

    async def _switch(self, old: int) -> bool:
        """Move from lease `old` to a new one with the wanted TTL; False (old lease kept) if none is granted."""
        ttl, old_ttl = self._ttl(), self.ttl
        try:
            new = await asyncio.wait_for(self._cp.grant_lease(ttl), old_ttl / 3)
        except Exception as exc:
            reason = str(exc) or "no answer"
            self._failed("cannot grant a lease of %.1f s to replace lease %x (%s); keeping it", ttl, old, reason)
            return False
        self._recovered()
        log.info("lease TTL changes from %.1f s to %.1f s: moving from lease %x to %x", old_ttl, ttl, old, new)
        self.lease_id, self.ttl, self._pause = new, ttl, ttl / 3
        await self._on_granted(new)
        self._ready.set()
        if self._moved is not None:
            await self._moved(min(ttl, old_ttl) / 3)
        try:
            await asyncio.wait_for(self._cp.revoke_lease(old), ttl / 3)
        except Exception as exc:
            if not lease_gone(exc):
                log.warning("could not revoke lease %x (%s); it expires after %.1f s", old, exc, old_ttl)
        return True

    async def _grant(self) -> None:
        ttl = self._ttl()
        try:
            lease_id = await asyncio.wait_for(self._cp.grant_lease(ttl), ttl)
        except Exception as exc:  # TimeoutError included: a lease granted too late just expires
            reason = str(exc) or f"no answer within {ttl:.1f} s"
            self._failed("cannot grant a lease of %.1f s (%s); retrying every %.1f s", ttl, reason, self._retry)
            await self._sleep(self._retry)
            return
        self._recovered()
        log.info("holding lease %x (ttl %.1f s)", lease_id, ttl)
        self.lease_id, self.ttl, self._pause = lease_id, ttl, ttl / 3
        await self._on_granted(lease_id)
        self._ready.set()

    def _failed(self, message: str, *args: object) -> None:
        log.log(logging.DEBUG if self._unreachable else logging.WARNING, message, *args)
        self._unreachable = True

    def _recovered(self) -> None:
        if self._unreachable:
            log.warning("the control plane answers again")
            self._unreachable = False

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def revoke(self) -> None:
        """End the lease now (shutdown): the control plane drops whatever still hangs on it."""
        lease_id, self.lease_id = self.lease_id, None
        self._ready.clear()
        if lease_id is None:
            return
        try:
            await self._cp.revoke_lease(lease_id)
        except Exception as exc:
            if not lease_gone(exc):
                log.warning("could not revoke lease %x (%s); it expires after %.1f s", lease_id, exc, self.ttl)
