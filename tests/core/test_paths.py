"""Request paths normalised for routing: dot segments (also `%2e`) resolved, slashes merged, a climb above the
root refused; the routing table routes, and forwards, the normalised path."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def rfc3986_remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 as written (input buffer → output buffer), the reference for `normalize_path`."""
    out = ""
    while path:
        if path.startswith(("../", "./")):
            path = path[path.index("/") + 1 :]
        elif path.startswith("/./") or path == "/.":
            path = "/" + path[3:]
        elif path.startswith("/../") or path == "/..":
            path = "/" + path[4:]
            out = out[: out.rfind("/")] if "/" in out else ""
        elif path in (".", ".."):
            path = ""
        else:
            end = path.find("/", 1)
            end = len(path) if end < 0 else end
            out, path = out + path[:end], path[end:]
    return out


def depth_goes_negative(path: str) -> bool:
    """Some ".." segment of `path` has no segment before it to remove."""
    depth = 0
    for segment in path.split("/")[1:]:
        if segment == "..":
            depth -= 1
            if depth < 0:
                return True
        elif segment not in ("", "."):
            depth += 1
    return False


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "bc", ".", "..", "", "%2e", "%2E.", ".a", "%20"]), max_size=8))
def test_normalize_path_agrees_with_the_rfc_algorithm(segments: list[str]) -> None:
    """On any path of these segments: PathAboveRoot exactly when a ".." climbs above the root; otherwise the
    RFC 3986 algorithm's result after reading `%2e` as "." and merging slashes."""
    raw = "/" + "/".join(segments)
    decoded = raw.replace("%2e", ".").replace("%2E", ".")
    if depth_goes_negative(decoded):
        with pytest.raises(PathAboveRoot):
            normalize_path(raw.encode())
        return
    merged = re.sub("/+", "/", decoded)
    assert normalize_path(raw.encode()) == (rfc3986_remove_dot_segments(merged) or "/").encode()
