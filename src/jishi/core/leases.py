"""The lease table: which leases exist, when each one expires, and which are due.

Theory of operation
-------------------
A lease is a promise that lasts `ttl` seconds unless renewed. The table keeps, for every live lease, its
granted TTL and its deadline (`now + ttl` at grant or at the last keep-alive). It never reads a clock: every
call that depends on time takes `now`. The shell that owns the table (the store) asks `due(now)` which leases
have reached their deadline, deletes their keys, and then calls `revoke` — so a lease whose revocation fails
half-way stays due and is retried on the next pass rather than being forgotten.

Rules:
- a TTL must be positive; granting an id that is live is an error (`LeaseExistsError`);
- `keepalive` and `revoke` of an unknown id raise `LeaseNotFoundError`; a lease past its deadline but not yet
  revoked still counts as live (the expiry pass will end it) — but `keepalive` refuses it, so a renewal that
  arrives too late cannot resurrect it;
- ids chosen by the table (`next_id`) grow monotonically from the highest id ever seen, so a revoked id is not
  handed out again while the table lives (the shell persists `high_water` to keep that across restarts).

Stalls. The shell runs an expiry pass every `interval` seconds or sooner. If the time since it last looked at the
leases is much longer than that (`stall`: more than `stall_tolerance(interval)`), the shell itself was not running
— the process was stopped, swapped out, its VM paused, or its loop blocked — and so were the keep-alives its
clients kept sending, which are still waiting in its sockets. Expiring leases on such a gap would punish every
holder for the store's own pause, so the shell first `postpone`s every deadline by the excess (`gap - interval`),
as etcd renews every lease when a new leader takes over, and only then judges which leases are due.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from jishi.errors import InvalidRequestError, LeaseNotFoundError


def stall_tolerance(interval: float) -> float:
    """How far beyond `interval` a gap between expiry passes may stretch before it counts as a stall."""
    return max(1.0, 5.0 * interval)


def stall(gap: float, interval: float) -> float:
    """The seconds to postpone every deadline by after `gap` seconds without an expiry pass, when passes run every
    `interval` seconds or sooner: the excess `gap - interval` if `gap` is more than `stall_tolerance(interval)`,
    else 0.0 (an ordinary gap, nothing to make up for)."""
    if gap > stall_tolerance(interval):
        return gap - interval
    return 0.0


class LeaseExistsError(InvalidRequestError):
    """A lease with the requested id is already live."""

    code = "lease_exists"

    def __init__(self, lease_id: int) -> None:
        self.lease_id = lease_id
        super().__init__(f"lease {lease_id} already exists; pick another id or pass 0 to let the store choose")


@dataclass(frozen=True, slots=True)
class LeaseState:
    """One live lease: its id, the TTL it was granted with, and the time at which it expires."""

    id: int
    ttl: float
    deadline: float

    def remaining(self, now: float) -> float:
        """Seconds left before expiry at `now` (never negative)."""
        return max(0.0, self.deadline - now)


class LeaseTable:
    """Live leases and their deadlines. Pure: every time-dependent call takes `now`."""

    def __init__(self, high_water: int = 0) -> None:
        self._leases: dict[int, LeaseState] = {}
        self._high_water = high_water

    @property
    def high_water(self) -> int:
        """The highest lease id ever granted through this table (or given at construction)."""
        return self._high_water

    def __len__(self) -> int:
        return len(self._leases)

    def __contains__(self, lease_id: object) -> bool:
        return lease_id in self._leases

    def ids(self) -> list[int]:
        """Every live lease id, ascending."""
        return sorted(self._leases)

    def get(self, lease_id: int) -> LeaseState:
        """The live lease `lease_id`; raises LeaseNotFoundError if there is none."""
        try:
            return self._leases[lease_id]
        except KeyError:
            raise LeaseNotFoundError(lease_id) from None

    def next_id(self) -> int:
        """An id never handed out before: one above the high-water mark."""
        return self._high_water + 1

    def grant(self, lease_id: int, ttl: float, now: float) -> LeaseState:
        """Start lease `lease_id` with `ttl` seconds from `now`."""
        if lease_id <= 0:
            raise ValueError(f"a lease id must be positive, not {lease_id}")
        if not ttl > 0:
            raise ValueError(f"a lease TTL must be positive seconds, not {ttl}")
        if lease_id in self._leases:
            raise LeaseExistsError(lease_id)
        state = LeaseState(lease_id, float(ttl), now + ttl)
        self._leases[lease_id] = state
        self._high_water = max(self._high_water, lease_id)
        return state

    def keepalive(self, lease_id: int, now: float) -> LeaseState:
        """Restart the TTL of a lease that has not reached its deadline yet."""
        state = self.get(lease_id)
        if state.deadline <= now:
            raise LeaseNotFoundError(lease_id)
        renewed = LeaseState(lease_id, state.ttl, now + state.ttl)
        self._leases[lease_id] = renewed
        return renewed

    def revoke(self, lease_id: int) -> LeaseState:
        """Forget lease `lease_id`; returns what it was."""
        state = self.get(lease_id)
        del self._leases[lease_id]
        return state

    def postpone(self, delta: float) -> None:
        """Move every deadline `delta` seconds later (after a stall of the shell: see the module doc)."""
        if not delta >= 0:
            raise ValueError(f"deadlines can only be postponed by a non-negative delay, not {delta}")
        self._leases = {i: LeaseState(i, s.ttl, s.deadline + delta) for i, s in self._leases.items()}

    def restore(self, leases: Iterable[tuple[int, float]], now: float) -> None:
        """Load persisted `(id, ttl)` pairs, each with a fresh full TTL from `now` (as etcd does on a new leader)."""
        for lease_id, ttl in leases:
            self.grant(lease_id, ttl, now)

    def due(self, now: float) -> list[int]:
        """Ids of the leases whose deadline is at or before `now`, earliest deadline first."""
        expired = [s for s in self._leases.values() if s.deadline <= now]
        expired.sort(key=lambda s: (s.deadline, s.id))
        return [s.id for s in expired]

    def next_deadline(self) -> float | None:
        """The earliest deadline of any live lease (None when there are none)."""
        return min((s.deadline for s in self._leases.values()), default=None)
