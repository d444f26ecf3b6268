"""Deregistration deadlines: exact times at which long-critical instances become due."""

from __future__ import annotations

from jishi.core.deregister import deadline, due, next_deadline
from jishi.registry.model import Health, Instance


def _inst(iid: str, health: Health, since: float, after: float | None) -> Instance:
    return Instance(
        id=iid, service="web", port=9000, health=health, health_since=since, deregister_critical_after=after
    )


def test_critical_instance_becomes_due_exactly_at_its_deadline() -> None:
    """Critical since 100 with a 30 s deadline: not due at 129.999, due at 130.0 and after."""
    inst = _inst("a", Health.CRITICAL, 100.0, 30.0)
    assert deadline(inst) == 130.0
    assert due([inst], 129.999) == []
    assert due([inst], 130.0) == [inst]
    assert due([inst], 500.0) == [inst]


def test_healthy_or_unconfigured_instances_are_never_due() -> None:
    """Passing and warning instances, and critical ones without the setting, have no deadline."""
    instances = [
        _inst("p", Health.PASSING, 0.0, 1.0),
        _inst("w", Health.WARNING, 0.0, 1.0),
        _inst("n", Health.CRITICAL, 0.0, None),
    ]
    assert [deadline(i) for i in instances] == [None, None, None]
    assert due(instances, 1e12) == []
    assert next_deadline(instances) is None


def test_due_keeps_the_given_order_and_picks_only_expired_ones() -> None:
    """Of three critical instances, the two past their deadlines are returned in input order."""
    late = _inst("late", Health.CRITICAL, 10.0, 5.0)  # deadline 15
    fresh = _inst("fresh", Health.CRITICAL, 18.0, 5.0)  # deadline 23
    early = _inst("early", Health.CRITICAL, 0.0, 2.0)  # deadline 2
    assert due([late, fresh, early], 20.0) == [late, early]


def test_next_deadline_is_the_earliest_one() -> None:
    """next_deadline tells a reaper when it next has work: the minimum over instances with a deadline."""
    instances = [_inst("a", Health.CRITICAL, 10.0, 5.0), _inst("b", Health.CRITICAL, 1.0, 3.0)]
    assert next_deadline(instances) == 4.0
