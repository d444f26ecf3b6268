"""The client SDK: service-to-service calls with discovery, load balancing and resilience.

    async with ServiceDirectory(HttpControlPlane(url), cache_path=".jishi/directory.json") as directory:
        async with Client(directory, "catalog", breaker=BreakerConfig(...), hedge=HedgePolicy(0.05)) as catalog:
            response = await catalog.get("/items")

`ServiceDirectory` follows the control plane's instances (watch, cached on disk, works while it is down);
`Client` balances over one service's instances and applies the cluster strategy (`Strategy`), retries, retry
budget, hedging, per-instance breakers and a bulkhead; `SyncClient` is the same for code without an event loop.
Failures raise `jishi.errors.ServiceCallError` / `ServiceUnavailable` / `CallRejected`, naming every try.
"""

from jishi.client.client import EMPTY_HEADER, Client, Strategy, is_empty
from jishi.client.directory import ServiceDirectory
from jishi.client.failback import FailbackPolicy
from jishi.client.sync import SyncClient
from jishi.errors import Attempt, CallRejected, ServiceCallError, ServiceUnavailable

__all__ = [
    "EMPTY_HEADER",
    "Attempt",
    "CallRejected",
    "Client",
    "FailbackPolicy",
    "ServiceCallError",
    "ServiceDirectory",
    "ServiceUnavailable",
    "Strategy",
    "SyncClient",
    "is_empty",
]
