"""The routing table: host then longest-prefix matching on segments, prefix stripping, peers per route."""

from __future__ import annotations

from jishi.core.routing import RoutingTable, normalize_host, prefix_matches
from jishi.registry.model import Health, Instance, Route, RouteBackend


def inst(service: str, n: int, *, health: Health = Health.PASSING, **kw: object) -> Instance:
    return Instance(id=f"{service}-{n}", service=service, port=20000 + n, health=health, **kw)  # type: ignore[arg-type]


def route(name: str, prefix: str = "/", **kw: object) -> Route:
    backends = kw.pop("backends", None) or [RouteBackend(service=name)]
    return Route(name=name, prefix=prefix, backends=backends, **kw)  # type: ignore[arg-type]


def names(table: RoutingTable, host: bytes | None, url: bytes) -> tuple[str, bytes] | None:
    m = table.match(host, url)
    return None if m is None else (m.route.name, m.path)


def test_prefix_matches_on_segment_boundaries() -> None:
    """/api/catalog matches itself and its subpaths but not /api/catalogue."""
    p = b"/api/catalog"
    assert prefix_matches(p, b"/api/catalog")
    assert prefix_matches(p, b"/api/catalog/")
    assert prefix_matches(p, b"/api/catalog/x")
    assert not prefix_matches(p, b"/api/catalogue")
    assert not prefix_matches(p, b"/api")
    assert prefix_matches(b"", b"/anything")


def test_longest_prefix_wins_and_trailing_slash_is_equivalent() -> None:
    """The most specific prefix is chosen; '/api/catalog/' and '/api/catalog' route alike."""
    table = RoutingTable.build(
        [route("root", "/"), route("api", "/api/"), route("catalog", "/api/catalog/")], [inst("root", 1)]
    )
    assert names(table, None, b"/api/catalog/items")[0] == "catalog"  # type: ignore[index]
    assert names(table, None, b"/api/catalog")[0] == "catalog"  # type: ignore[index]
    assert names(table, None, b"/api/catalogue")[0] == "api"  # type: ignore[index]
    assert names(table, None, b"/other")[0] == "root"  # type: ignore[index]


def test_strip_prefix_keeps_query_and_leading_slash() -> None:
    """Stripping removes the prefix, keeps the query string, and never yields an empty path."""
    table = RoutingTable.build([route("catalog", "/api/catalog/", strip_prefix=True)], [])
    assert names(table, None, b"/api/catalog/items?x=1") == ("catalog", b"/items?x=1")
    assert names(table, None, b"/api/catalog") == ("catalog", b"/")
    assert names(table, None, b"/api/catalog?q=2") == ("catalog", b"/?q=2")
    assert names(table, None, b"/nope") is None


def test_without_strip_the_url_is_passed_unchanged() -> None:
    """A route without strip_prefix forwards the path as sent."""
    table = RoutingTable.build([route("catalog", "/api/catalog")], [])
    assert names(table, None, b"/api/catalog/x?y") == ("catalog", b"/api/catalog/x?y")


def test_host_routing_exact_then_wildcard_then_hostless() -> None:
    """Exact host routes beat wildcard ones, which beat host-less ones; ports and case are ignored."""
    table = RoutingTable.build(
        [
            route("exact", host="shop.example.com"),
            route("wild", host="*.example.com"),
            route("deepwild", host="*.eu.example.com"),
            route("any"),
        ],
        [],
    )
    assert names(table, b"Shop.Example.com:8080", b"/")[0] == "exact"  # type: ignore[index]
    assert names(table, b"api.example.com", b"/")[0] == "wild"  # type: ignore[index]
    assert names(table, b"x.eu.example.com", b"/")[0] == "deepwild"  # type: ignore[index]
    assert names(table, b"example.com", b"/")[0] == "any"  # type: ignore[index]
    assert names(table, None, b"/")[0] == "any"  # type: ignore[index]


def test_host_group_without_matching_path_falls_through_to_hostless() -> None:
    """A host with only /admin routed still reaches the host-less catch-all for other paths."""
    table = RoutingTable.build([route("admin", "/admin", host="a.test"), route("any")], [])
    assert names(table, b"a.test", b"/admin/x")[0] == "admin"  # type: ignore[index]
    assert names(table, b"a.test", b"/shop")[0] == "any"  # type: ignore[index]


def test_peers_are_in_rotation_instances_with_multiplied_weights_and_backup_tiers() -> None:
    """Only passing/warning non-draining instances are peers; weights multiply; backup comes from either side."""
    instances = [
        inst("a", 1, weight=2),
        inst("a", 2, health=Health.WARNING),
        inst("a", 3, health=Health.CRITICAL),
        inst("a", 4, draining=True),
        inst("a", 5, backup=True),
        inst("b", 6),
    ]
    r = route("r", backends=[RouteBackend(service="a", weight=3), RouteBackend(service="b", backup=True)])
    table = RoutingTable.build([r], instances)
    peers = {p.key: (p.weight, p.backup) for p in table.routes["r"].balancer.peers}
    assert peers == {"a/a-1": (6, False), "a/a-2": (3, False), "a/a-5": (3, True), "b/b-6": (1, True)}


def test_rebuild_keeps_round_robin_position_of_unchanged_peers() -> None:
    """Rebuilding after an unrelated change continues the rotation instead of restarting it."""
    instances = [inst("a", 1), inst("a", 2), inst("a", 3)]
    table = RoutingTable.build([route("a")], instances)
    first = [table.routes["a"].balancer.pick(0.0).key for _ in range(2)]  # type: ignore[union-attr]
    table = RoutingTable.build([route("a")], instances, previous=table)
    third = table.routes["a"].balancer.pick(0.0).key  # type: ignore[union-attr]
    assert sorted([*first, third]) == ["a/a-1", "a/a-2", "a/a-3"]


def test_normalize_host() -> None:
    """Host normalisation drops the port and trailing dot and lower-cases; IPv6 literals survive."""
    assert normalize_host(b"API.Example.com.:80") == b"api.example.com"
    assert normalize_host(b"[::1]:8080") == b"[::1]"
    assert normalize_host(b"localhost") == b"localhost"


def test_route_without_policy_sections_takes_the_fast_path() -> None:
    """No lb/health_check/outlier/retry/timeout: not tracked, no peer group, the record's retries and timeouts."""
    entry = RoutingTable.build([route("a", retries=1, read_timeout=7)], [inst("a", 1)]).routes["a"]
    assert not entry.tracked and entry.group is None and entry.retry is None and entry.total_timeout == 0
    assert (entry.retries, entry.read_timeout, entry.hash_on) == (1, 7, None)


def test_policy_sections_compile_into_the_entry() -> None:
    """retry replaces retries and read_timeout; lb/outlier give a group config; hash policies default to ip."""
    from jishi.core.retry import RetryOn

    r = Route.model_validate(
        {
            "name": "a",
            "backends": [{"service": "a"}],
            "lb": {"policy": "maglev", "slow_start": "5s", "panic_threshold": 0.3},
            "outlier": {"consecutive_5xx": 2, "base_ejection_time": "1s"},
            "retry": {"attempts": 4, "on": ["timeout", "503"], "per_try_timeout": "200ms"},
            "timeout": "2s",
        }
    )
    entry = RoutingTable.build([r], [inst("a", 1)]).routes["a"]
    assert entry.tracked and entry.total_timeout == 2.0
    assert (entry.retries, entry.read_timeout) == (4, 0.2)
    assert entry.retry is not None and entry.retry.on == RetryOn.TIMEOUT | RetryOn.S503
    assert entry.group is not None and (entry.group.policy, entry.group.slow_start) == ("maglev", 5.0)
    assert entry.group.panic_threshold == 0.3 and entry.hash_on == "ip"
    assert entry.group.outlier is not None and entry.group.outlier.consecutive_5xx == 2
    assert entry.group.outlier.base_ejection_time == 1.0


def test_route_counters_outlive_rebuilds() -> None:
    """retries_done is kept by route name across table rebuilds; ejected() is empty without a peer group."""
    table = RoutingTable.build([route("a")], [inst("a", 1)])
    table.routes["a"].counters.retries += 3
    table = RoutingTable.build([route("a")], [inst("a", 1), inst("a", 2)], previous=table)
    assert table.routes["a"].retries_done == 3 and table.routes["a"].ejected() == []
