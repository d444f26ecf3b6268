"""Fixtures for gateway tests (helpers live in gateway_harness.py)."""

from gateway_harness import backends, gateway

__all__ = ["backends", "gateway"]
