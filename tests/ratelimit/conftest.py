"""Fixtures of the Redis rate limiter tests: a real redis-server and a client of it."""

from __future__ import annotations

from redis_harness import redis_client, redis_server

__all__ = ["redis_client", "redis_server"]
