"""The store conformance suite run against `SqliteStore`, plus what only the SQLite backend promises."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance import StoreConformance

from jishi.store import Store
from jishi.store.sqlite import SqliteStore
from jishi.testing import FakeClock


class SqliteFactory:
    """Opens a `SqliteStore` in `directory/state.db`; expiry is driven by `expire_due()`."""

    async def __call__(self, directory: Path, clock: FakeClock) -> Store:
        return await SqliteStore.open(directory / "state.db", clock=clock)

    async def expire(self, store: Store) -> None:
        assert isinstance(store, SqliteStore)
        await store.expire_due()


@pytest.fixture
def store_factory() -> SqliteFactory:
    return SqliteFactory()


class TestSqliteConformance(StoreConformance):
    """The whole conformance suite on the SQLite backend."""
