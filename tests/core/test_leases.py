"""The pure lease table: grant, keep-alive, revoke and which leases are due, at exact times."""

from __future__ import annotations

import pytest

from jishi.core.leases import LeaseExistsError, LeaseTable, stall, stall_tolerance
from jishi.errors import LeaseNotFoundError


def test_grant_sets_deadline_from_now() -> None:
    """A granted lease expires exactly `ttl` seconds after `now`."""
    table = LeaseTable()
    state = table.grant(7, 2.5, now=100.0)
    assert (state.id, state.ttl, state.deadline) == (7, 2.5, 102.5)
    assert state.remaining(101.0) == 1.5
    assert state.remaining(200.0) == 0.0


def test_due_is_exact_at_the_deadline() -> None:
    """A lease is not due a hair before its deadline and is due at it."""
    table = LeaseTable()
    table.grant(1, 3.0, now=10.0)
    assert table.due(12.999) == []
    assert table.due(13.0) == [1]


def test_due_orders_by_deadline() -> None:
    """Several due leases come back earliest deadline first, whatever their ids."""
    table = LeaseTable()
    table.grant(1, 5.0, now=0.0)
    table.grant(2, 1.0, now=0.0)
    table.grant(3, 3.0, now=0.0)
    assert table.due(10.0) == [2, 3, 1]
    assert table.next_deadline() == 1.0


def test_due_does_not_remove() -> None:
    """Asking which leases are due changes nothing; only revoke ends a lease."""
    table = LeaseTable()
    table.grant(1, 1.0, now=0.0)
    assert table.due(5.0) == [1]
    assert table.due(5.0) == [1]
    table.revoke(1)
    assert table.due(5.0) == []
    assert 1 not in table


def test_keepalive_restarts_the_ttl() -> None:
    """A keep-alive moves the deadline to `now + ttl`."""
    table = LeaseTable()
    table.grant(1, 2.0, now=0.0)
    renewed = table.keepalive(1, now=1.5)
    assert renewed.deadline == 3.5
    assert table.due(3.0) == []
    assert table.due(3.5) == [1]


def test_keepalive_after_deadline_is_refused() -> None:
    """A renewal that arrives at or after the deadline cannot resurrect the lease."""
    table = LeaseTable()
    table.grant(1, 2.0, now=0.0)
    with pytest.raises(LeaseNotFoundError):
        table.keepalive(1, now=2.0)
    assert table.get(1).deadline == 2.0


def test_unknown_lease_errors() -> None:
    """keepalive, revoke and get of an unknown id raise LeaseNotFoundError naming the id."""
    table = LeaseTable()
    for call in (lambda: table.keepalive(9, 0.0), lambda: table.revoke(9), lambda: table.get(9)):
        with pytest.raises(LeaseNotFoundError, match="lease 9"):
            call()


def test_grant_rejects_bad_input() -> None:
    """A live id cannot be granted twice; TTL and id must be positive."""
    table = LeaseTable()
    table.grant(1, 1.0, now=0.0)
    with pytest.raises(LeaseExistsError):
        table.grant(1, 1.0, now=0.0)
    with pytest.raises(ValueError, match="TTL"):
        table.grant(2, 0.0, now=0.0)
    with pytest.raises(ValueError, match="id"):
        table.grant(0, 1.0, now=0.0)


def test_next_id_never_reuses() -> None:
    """Ids chosen by the table climb past every id granted, even explicit and revoked ones."""
    table = LeaseTable(high_water=10)
    assert table.next_id() == 11
    table.grant(50, 1.0, now=0.0)
    table.revoke(50)
    assert table.next_id() == 51
    assert table.high_water == 50


def test_restore_gives_fresh_full_ttl() -> None:
    """Restored leases get their whole TTL again from the restore time."""
    table = LeaseTable()
    table.restore([(3, 2.0), (4, 5.0)], now=1000.0)
    assert table.ids() == [3, 4]
    assert table.get(3).deadline == 1002.0
    assert table.get(4).deadline == 1005.0
    assert table.next_id() == 5


def test_postpone_moves_every_deadline_by_the_delay() -> None:
    """After postpone(4) every lease is due 4 s later than before, TTLs unchanged; a negative delay is refused."""
    table = LeaseTable()
    table.grant(1, 3.0, now=10.0)
    table.grant(2, 5.0, now=11.0)
    table.postpone(4.0)
    assert [(s.ttl, s.deadline) for s in map(table.get, table.ids())] == [(3.0, 17.0), (5.0, 20.0)]
    assert table.due(16.999) == []
    assert table.due(17.0) == [1]
    assert table.keepalive(1, now=16.0).deadline == 19.0  # still live after its original deadline of 13
    with pytest.raises(ValueError, match="non-negative"):
        table.postpone(-1.0)


def test_stall_is_only_a_gap_beyond_the_tolerance() -> None:
    """Gaps up to max(1 s, 5 × interval) are ordinary; a longer one is made up for by its excess over the interval."""
    assert stall_tolerance(0.1) == 1.0
    assert stall_tolerance(0.5) == 2.5
    assert stall(0.1, 0.1) == 0.0
    assert stall(1.0, 0.1) == 0.0
    assert stall(4.0, 0.1) == pytest.approx(3.9)
    assert stall(2.5, 0.5) == 0.0
    assert stall(2.6, 0.5) == pytest.approx(2.1)
