"""Test doubles and harnesses for jishi and for services built on it.

These are product code, tested themselves: a fake clock for exact-time tests of policies, helpers that
find free loopback ports, and a harness that starts real processes and always stops them by PID.
"""

from jishi.testing.clock import FakeClock
from jishi.testing.metrics import metric_samples
from jishi.testing.ports import free_port, wait_for_port
from jishi.testing.processes import ManagedProcess, ProcessGroup
from jishi.testing.transport import MemoryTransport

__all__ = [
    "FakeClock",
    "ManagedProcess",
    "MemoryTransport",
    "ProcessGroup",
    "free_port",
    "metric_samples",
    "wait_for_port",
]
