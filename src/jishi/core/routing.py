"""The gateway's routing table: which route a request takes, and which peers serve that route.

Theory of operation
-------------------
A table is built from the registry's routes and instances (`RoutingTable.build`); the gateway swaps in a new
table on every change, and a rebuild passes the old table so balancer state (round-robin position, failure
marks) of unchanged peers survives.

Matching a request (`match(host, path)`) goes by host first, then by path:

1. host: routes whose `host` equals the request host (lower-cased, port removed); then wildcard routes
   `*.example.com`, longest suffix first (`*.example.com` matches `a.example.com` and `a.b.example.com`, not
   `example.com`); then routes without a host. If no route of a host group matches the path, the next group
   is tried, so a host-less catch-all still applies to a host that only has some paths routed.
2. path: the longest matching prefix wins. Prefixes match on whole path segments: `/api/catalog` and
   `/api/catalog/` both match `/api/catalog`, `/api/catalog/` and `/api/catalog/items`, but not
   `/api/catalogue`. The prefix `/` matches everything.

With `strip_prefix`, the matched prefix (without its trailing slash) is removed and the result always starts
with `/`: `/api/catalog/items?x=1` → `/items?x=1`, `/api/catalog` → `/`. Query strings are kept. A path with
dot segments, `%2e` or `//` is normalised first (`jishi.core.paths`: `/api/x/../../admin` is routed, and sent
to the instance, as `/admin`; one that climbs above the root raises `PathAboveRoot`); no other percent-decoding
is done, and any other path reaches the instance as sent.

Peers of a route: every instance of each backend service that is in rotation (passing or warning, not
draining); weight = instance weight × backend weight; an instance is in the backup tier when it or its
backend is marked `backup`. Paths and hosts are `bytes` (as they come off the wire).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from jishi.core.balancer import DEFAULT_FAIL_TIMEOUT, Balancer, PeerSpec
from jishi.core.lb import OutlierConfig
from jishi.core.paths import normalize_path
from jishi.core.peer_group import GroupConfig
from jishi.core.retry import RetryRules

__all__ = [
    "Match",
    "RouteCounters",
    "RouteEntry",
    "RoutingTable",
    "group_config",
    "normalize_host",
    "prefix_matches",
    "strip_path",
]


class BackendLike(Protocol):
    @property
    def service(self) -> str: ...
    @property
    def weight(self) -> int: ...
    @property
    def backup(self) -> bool: ...


class RouteLike(Protocol):
    """The fields of `jishi.registry.model.Route` the table reads."""

    @property
    def name(self) -> str: ...
    @property
    def prefix(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def strip_prefix(self) -> bool: ...
    @property
    def backends(self) -> Sequence[BackendLike]: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def read_timeout(self) -> float: ...
    @property
    def retries(self) -> int: ...


class InstanceLike(Protocol):
    """The fields of `jishi.registry.model.Instance` the table reads."""

    @property
    def id(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def weight(self) -> int: ...
    @property
    def backup(self) -> bool: ...
    @property
    def in_rotation(self) -> bool: ...


class RouteCounters:
    """Counters of one route that outlive table rebuilds (read at scrape time): retries started, hedges sent and
    hedges whose response won."""

    __slots__ = ("hedges_sent", "hedges_won", "retries")

    def __init__(self) -> None:
        self.retries = 0
        self.hedges_sent = 0
        self.hedges_won = 0


@dataclass(slots=True)
class RouteEntry:
    """One route, ready for the hot path: byte prefix, timeouts and its balancer.

    A route with an `lb`, `health_check` or `outlier` section is balanced by a `jishi.core.peer_group.PeerGroup`
    (`lb`, attached by the gateway with its clock) built from `group`; otherwise by `balancer`. `tracked` says a
    try must be reported when it starts and ends (a peer group, a retry budget or a total timeout needs it).
    """

    name: str
    host: bytes | None
    prefix: bytes  # without a trailing slash; b"" for "/"
    strip_prefix: bool
    connect_timeout: float
    read_timeout: float
    retries: int
    balancer: Balancer
    spec: RouteLike | None = None  # the route record it was built from (its policy sections)
    upstream_tls: Any = None  # the route's `UpstreamTLS` section: connections to its peers speak TLS
    # The gateway's per-route policy chain (`jishi.gateway.policy.RoutePolicy`), attached after the build and
    # carried over to the next table while the route record is unchanged; None: no policy on the route.
    policy: Any = None
    retry: RetryRules | None = None  # the route's retry section (None: `retries` on connect failure and reset)
    total_timeout: float = 0.0  # the whole request, every try (0: none)
    group: GroupConfig | None = None  # balanced by a peer group, configured so (None: by `balancer`)
    hash_on: str | None = None  # request key of ring_hash / maglev: "ip", "path", "route", "header:X", "cookie:X"
    health_check: Any = None  # the route's `health_check` section (jishi.registry.policies.ActiveHealthCheck)
    tracked: bool = False
    lb: Any = None  # the `PeerGroup` (attached by the gateway)
    budget: Any = None  # the `jishi.core.resilience.RetryBudget` (attached by the gateway)
    hedge: Any = None  # a route with a hedge section: its `jishi.gateway.hedging.HedgeTimer` (gateway-attached)
    counters: RouteCounters = field(default_factory=RouteCounters)

    @property
    def retries_done(self) -> int:
        """Retries started on this route since the gateway started (kept across table rebuilds)."""
        return self.counters.retries

    def ejected(self) -> list[str]:
        """Peers ("service/id") the gateway took out of this route: outlier ejection or failing active checks."""
        return [] if self.lb is None else list(self.lb.out_of_rotation())


@dataclass(frozen=True, slots=True)
class Match:
    route: RouteEntry
    path: bytes  # the path (with query) to send to the instance


_HASHED = ("ring_hash", "maglev")


def group_config(route: Any, fail_timeout: float = DEFAULT_FAIL_TIMEOUT) -> GroupConfig | None:
    """How a route record's `lb` and `outlier` sections balance it; None when the route has none of `lb`,
    `health_check` and `outlier` (plain smooth round-robin, the fast path)."""
    lb = getattr(route, "lb", None)
    outlier = getattr(route, "outlier", None)
    if lb is None and outlier is None and getattr(route, "health_check", None) is None:
        return None
    detector = None
    if outlier is not None:
        detector = OutlierConfig(
            consecutive_5xx=outlier.consecutive_5xx,
            consecutive_gateway_failure=outlier.consecutive_gateway_errors,
            interval=outlier.interval,
            base_ejection_time=outlier.base_ejection_time,
            max_ejection_time=outlier.max_ejection_time,
            max_ejection_percent=outlier.max_ejection_percent,
            success_rate_minimum_hosts=outlier.success_rate_minimum_hosts,
            success_rate_request_volume=outlier.success_rate_request_volume,
            success_rate_stdev_factor=outlier.success_rate_stdev_factor,
            success_rate_enabled=outlier.success_rate,
        )
    check = getattr(route, "health_check", None)
    wait_for_pass = check is not None and check.wait_for_pass
    if lb is None:
        return GroupConfig(outlier=detector, fail_timeout=fail_timeout, wait_for_pass=wait_for_pass)
    return GroupConfig(
        policy=lb.policy,
        slow_start=lb.slow_start,
        slow_start_aggression=lb.slow_start_aggression,
        panic_threshold=lb.panic_threshold,
        outlier=detector,
        fail_timeout=fail_timeout,
        wait_for_pass=wait_for_pass,
    )


def normalize_host(host: bytes) -> bytes:
    """Lower-case, without port and trailing dot: b"API.Example.com:8080" → b"api.example.com"."""
    if host.startswith(b"["):  # IPv6 literal
        end = host.find(b"]")
        return host[: end + 1].lower() if end > 0 else host.lower()
    colon = host.rfind(b":")
    if colon >= 0:
        host = host[:colon]
    return host.rstrip(b".").lower()


def _prefix_bytes(prefix: str) -> bytes:
    return prefix.encode().rstrip(b"/")


def prefix_matches(prefix: bytes, path: bytes) -> bool:
    """`path` (without query) is under `prefix` (no trailing slash) on a segment boundary."""
    if not prefix:
        return True
    if not path.startswith(prefix):
        return False
    return len(path) == len(prefix) or path[len(prefix)] == 0x2F  # "/"


def strip_path(prefix: bytes, path: bytes, query: bytes) -> bytes:
    """`path` without `prefix`, always starting with "/", with `query` (incl. "?") appended."""
    rest = path[len(prefix) :]
    if not rest:
        rest = b"/"
    return rest + query


class RoutingTable:
    """An immutable map from (host, path) to a route and its peers. Build it with `RoutingTable.build`."""

    __slots__ = ("_any", "_exact", "_wild", "routes")

    def __init__(self, entries: Iterable[RouteEntry] = ()) -> None:
        self.routes: dict[str, RouteEntry] = {}
        exact: dict[bytes, list[RouteEntry]] = {}
        wild: dict[bytes, list[RouteEntry]] = {}
        anyhost: list[RouteEntry] = []
        for entry in entries:
            self.routes[entry.name] = entry
            if entry.host is None:
                anyhost.append(entry)
            elif entry.host.startswith(b"*."):
                wild.setdefault(entry.host[1:], []).append(entry)  # key ".example.com"
            else:
                exact.setdefault(entry.host, []).append(entry)

        def by_length(group: list[RouteEntry]) -> tuple[RouteEntry, ...]:
            return tuple(sorted(group, key=lambda e: (-len(e.prefix), e.name)))

        self._exact = {h: by_length(g) for h, g in exact.items()}
        self._wild = tuple((s, by_length(g)) for s, g in sorted(wild.items(), key=lambda kv: -len(kv[0])))
        self._any = by_length(anyhost)

    @classmethod
    def build(
        cls,
        routes: Iterable[RouteLike],
        instances: Iterable[InstanceLike],
        *,
        previous: RoutingTable | None = None,
        generations: dict[str, int] | None = None,
        fail_timeout: float = DEFAULT_FAIL_TIMEOUT,
    ) -> RoutingTable:
        """A table of `routes` over the in-rotation `instances`; balancer state of `previous` is kept.

        `generations` maps "service/id" to a number that changes when the registry re-reports an instance
        (its mod revision); a changed generation clears that peer's failure mark.
        """
        by_service: dict[str, list[InstanceLike]] = {}
        for inst in instances:
            if inst.in_rotation:
                by_service.setdefault(inst.service, []).append(inst)
        gens = generations or {}
        entries = []
        for route in routes:
            specs: list[PeerSpec] = []
            for backend in route.backends:
                for inst in sorted(by_service.get(backend.service, ()), key=lambda i: i.id):
                    key = f"{inst.service}/{inst.id}"
                    specs.append(
                        PeerSpec(
                            key=key,
                            address=inst.address,
                            port=inst.port,
                            weight=inst.weight * backend.weight,
                            backup=inst.backup or backend.backup,
                            generation=gens.get(key, 0),
                        )
                    )
            old = previous.routes.get(route.name) if previous is not None else None
            # A service named by two backends of one route counts once (the first backend wins).
            unique = list({s.key: s for s in reversed(specs)}.values())[::-1]
            retry_spec = getattr(route, "retry", None)
            rules = RetryRules.from_policy(retry_spec) if retry_spec is not None else None
            group = group_config(route, fail_timeout)
            lb_spec = getattr(route, "lb", None)
            total = getattr(route, "timeout", None) or 0.0
            entries.append(
                RouteEntry(
                    name=route.name,
                    host=route.host.encode().lower().rstrip(b".") if route.host else None,
                    prefix=_prefix_bytes(route.prefix),
                    strip_prefix=route.strip_prefix,
                    connect_timeout=route.connect_timeout,
                    read_timeout=(rules.per_try_timeout if rules and rules.per_try_timeout else route.read_timeout),
                    retries=rules.attempts if rules is not None else route.retries,
                    spec=route,
                    upstream_tls=getattr(route, "upstream_tls", None),
                    balancer=Balancer(
                        unique, fail_timeout=fail_timeout, previous=old.balancer if old is not None else None
                    ),
                    retry=rules,
                    total_timeout=total,
                    group=group,
                    hash_on=(getattr(lb_spec, "hash_on", None) or "ip") if group and group.policy in _HASHED else None,
                    health_check=getattr(route, "health_check", None),
                    tracked=group is not None or bool(total) or bool(retry_spec is not None and retry_spec.budget),
                    counters=old.counters if old is not None else RouteCounters(),
                )
            )
        return cls(entries)

    def match(self, host: bytes | None, url: bytes) -> Match | None:
        """The route for a request to `host` (raw Host header) and `url` (path with query), or None."""
        found = self.route_for(host, url)
        return None if found is None else Match(*found)

    def route_for(self, host: bytes | None, url: bytes) -> tuple[RouteEntry, bytes] | None:
        """`match` as a plain (route, path) tuple: what the gateway calls once per request; PathAboveRoot for
        a path whose ".." segments climb above the root."""
        q = url.find(b"?")
        if q >= 0:
            path, query = url[:q], url[q:]
        else:
            path, query = url, b""
        if 46 in path or 37 in path or path.find(b"//") >= 0:  # ".", "%" or "//" (see `jishi.core.paths`)
            normal = normalize_path(path)
            if normal is not path:
                path, url = normal, normal + query
        if host and (self._exact or self._wild):
            name = normalize_host(host)
            group = self._exact.get(name)
            if group:
                found = _first(group, path, url, query)
                if found is not None:
                    return found
            for suffix, wgroup in self._wild:
                if name.endswith(suffix) and len(name) > len(suffix):
                    found = _first(wgroup, path, url, query)
                    if found is not None:
                        return found
        return _first(self._any, path, url, query)


def _first(group: tuple[RouteEntry, ...], path: bytes, url: bytes, query: bytes) -> tuple[RouteEntry, bytes] | None:
    """The first (longest-prefix) entry of `group` matching `path`, with the path to send (see `match`)."""
    for entry in group:
        prefix = entry.prefix
        if not prefix:
            return entry, url
        if path.startswith(prefix):
            n = len(prefix)
            if len(path) == n:
                return (entry, b"/" + query) if entry.strip_prefix else (entry, url)
            if path[n] == 0x2F:  # "/": the prefix ends on a segment boundary
                return (entry, path[n:] + query) if entry.strip_prefix else (entry, url)
    return None
