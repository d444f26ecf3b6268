"""Fixtures for client tests (helpers live in client_harness.py)."""

from client_harness import cluster, directory, registry

__all__ = ["cluster", "directory", "registry"]
