"""Request paths normalised for routing: dot segments (also `%2e`) resolved, slashes merged, a climb above the
root refused; the routing table routes, and forwards, the normalised path."""

from __future__ import annotations

import pytest

from jishi.core.paths import PathAboveRoot, normalize_path
from jishi.core.routing import RoutingTable
from jishi.registry.model import Route, RouteBackend


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        (b"/", b"/"),
        (b"/a/b", b"/a/b"),
        (b"/a/./b", b"/a/b"),
        (b"/a/b/../c", b"/a/c"),
        (b"/api/catalog/../../admin/y", b"/admin/y"),
        (b"/a/b/..", b"/a/"),
        (b"/a/b/.", b"/a/b/"),
        (b"/a/b/", b"/a/b/"),
        (b"/a/..", b"/"),
        (b"//a///b//", b"/a/b/"),
        (b"/a/%2e%2e/b", b"/b"),
        (b"/a/.%2E/b", b"/b"),
        (b"/a/%2e/b", b"/a/b"),
        (b"/.well-known/x", b"/.well-known/x"),
        (b"/a/..b/c", b"/a/..b/c"),
        (b"/a%2fb/%20", b"/a%2fb/%20"),
    ],
)
def test_normalize_path(raw: bytes, normal: bytes) -> None:
    """RFC 3986 §5.2.4 dot-segment removal, `%2e` read as a dot, runs of slashes merged, other escapes kept."""
    assert normalize_path(raw) == normal


@pytest.mark.parametrize("raw", [b"/..", b"/../a", b"/a/../../b", b"/%2e%2e/admin", b"/a/./../.."])
def test_a_path_that_climbs_above_the_root_is_refused(raw: bytes) -> None:
    """A ".." with no segment left to remove raises PathAboveRoot, naming the path."""
    with pytest.raises(PathAboveRoot, match="climbs above the root"):
        normalize_path(raw)


def route(name: str, prefix: str, **kw: object) -> Route:
    return Route(name=name, prefix=prefix, backends=[RouteBackend(service=name)], **kw)  # type: ignore[arg-type]


def test_the_table_routes_and_forwards_the_normalised_path() -> None:
    """`/api/catalog/../../admin/y` takes the /admin route, and the instance gets `/admin/y`; the query is kept as
    sent; a prefix is stripped from the normalised path."""
    table = RoutingTable.build([route("api", "/api/catalog"), route("admin", "/admin", strip_prefix=True)], [])
    assert table.route_for(None, b"/api/catalog/../../admin/y?a=/../b")[0].name == "admin"  # type: ignore[index]
    assert table.route_for(None, b"/api/catalog/../../admin/y?a=/../b")[1] == b"/y?a=/../b"  # type: ignore[index]
    assert table.route_for(None, b"/api/catalog//./x")[1] == b"/api/catalog/x"  # type: ignore[index]
    assert table.route_for(None, b"//admin/%2e/z")[0].name == "admin"  # type: ignore[index]
    assert table.route_for(None, b"/api/catalog/../x") is None
    with pytest.raises(PathAboveRoot):
        table.route_for(None, b"/api/../../admin")
