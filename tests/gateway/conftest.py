"""Fixtures for gateway tests (helpers live in gateway_harness.py). Gateway tests run on uvloop, as production."""

from collections.abc import Callable, Mapping

import pytest
import uvloop
from gateway_harness import backends, gateway

__all__ = ["backends", "gateway"]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, Callable[[], object]]:
    """The gateway runs on uvloop in production; its tests do too."""
    return {"uvloop": uvloop.new_event_loop}
