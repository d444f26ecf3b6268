"""Deregistration deadlines: which instances have been critical for too long to stay in the registry.

Theory of operation
-------------------
An instance may declare `deregister_critical_after` (seconds). Once its health has been CRITICAL for that
long without a change, it is removed from the registry, as Consul's `deregister_critical_service_after` does:
an instance that never recovers should not linger in `jishi status` or in a gateway's table forever.

The deadline of an instance is

    health_since + deregister_critical_after        (only while health is CRITICAL)

and the instance is *due* at every `now` at or after its deadline. An instance without the setting, or whose
health is PASSING or WARNING, has no deadline. `health_since` moves only when the health value changes, so a
check that keeps failing does not push the deadline back.

This module only decides; the registry (`jishi.registry.Registry.reap`) reads the instances, asks `due(now)`
and deletes those named. Time is an argument: nothing here reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

__all__ = ["CRITICAL", "Deregistrable", "deadline", "due", "next_deadline"]

CRITICAL = "critical"  # the value of `jishi.registry.model.Health.CRITICAL` (a str enum)


class Deregistrable(Protocol):
    """The fields of `jishi.registry.model.Instance` this module reads."""

    @property
    def health(self) -> str: ...
    @property
    def health_since(self) -> float: ...
    @property
    def deregister_critical_after(self) -> float | None: ...


T = TypeVar("T", bound=Deregistrable)


def deadline(instance: Deregistrable) -> float | None:
    """The time at which `instance` is to be deregistered, or None if it has no deadline now."""
    after = instance.deregister_critical_after
    if after is None or instance.health != CRITICAL:
        return None
    return instance.health_since + after


def due(instances: Iterable[T], now: float) -> list[T]:
    """The instances whose deadline is at or before `now`, in the order given."""
    result = []
    for instance in instances:
        when = deadline(instance)
        if when is not None and when <= now:
            result.append(instance)
    return result


def next_deadline(instances: Iterable[Deregistrable]) -> float | None:
    """The earliest deadline among `instances` (None if none has one): when a reaper next has work."""
    deadlines = [when for when in map(deadline, instances) if when is not None]
    return min(deadlines) if deadlines else None
