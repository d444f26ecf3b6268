"""Fixtures for end-to-end tests: the shop demo running under a real `jishi up`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from shop_harness import ShopRun

from jishi.testing import ProcessGroup


@pytest.fixture
def shop(tmp_path: Path, procs: ProcessGroup) -> Iterator[ShopRun]:
    """The shop under `jishi up` on free ports, every instance in rotation; stopped and checked afterwards."""
    run = ShopRun(tmp_path, procs)
    try:
        run.start()
        yield run
    finally:
        run.stop()
