"""Fixtures for gateway tests (helpers live in gateway_harness.py). Gateway tests run on uvloop, as production."""

import pytest
import uvloop
from gateway_harness import backends, gateway

__all__ = ["backends", "gateway"]


@pytest.fixture(scope="session")
def event_loop_policy() -> uvloop.EventLoopPolicy:
    """The gateway runs on uvloop in production; its tests do too."""
    return uvloop.EventLoopPolicy()
