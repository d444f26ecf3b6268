"""Shared fixtures: a process group that always cleans up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from jishi.testing import ProcessGroup


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessGroup]:
    """Start real processes with `procs.start(...)`; every one is stopped (by PID) after the test."""
    group = ProcessGroup(tmp_path / "logs")
    try:
        yield group
    finally:
        group.stop_all()
