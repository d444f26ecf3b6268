"""Fixtures for agent tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from agent_harness import FakeControlPlane

from jishi.registry import Registry
from jishi.store.sqlite import SqliteStore


@pytest.fixture
async def cp(tmp_path: Path) -> AsyncIterator[Registry]:
    """The real control plane in-process: the Registry on a SQLite store."""
    store = await SqliteStore.open(tmp_path / "state.db")
    try:
        yield Registry(store)
    finally:
        await store.close()


@pytest.fixture
def fake_cp() -> FakeControlPlane:
    """An in-memory control plane that can be taken down and can lose leases on demand."""
    return FakeControlPlane()
