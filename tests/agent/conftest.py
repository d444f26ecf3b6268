"""Fixtures for agent tests."""

from __future__ import annotations

import pytest
from agent_harness import FakeControlPlane


@pytest.fixture
def cp() -> FakeControlPlane:
    return FakeControlPlane()
