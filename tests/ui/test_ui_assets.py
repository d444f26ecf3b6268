"""The dashboard's files as the control plane serves them (in-process, no browser)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jishi.registry import Registry
from jishi.server import create_app
from jishi.server.ui import ASSETS
from jishi.store.sqlite import SqliteStore
from jishi.testing import FakeClock


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = await SqliteStore.open(tmp_path / "state.db", clock=FakeClock())
    app = create_app(Registry(store, wall=FakeClock(5000.0)))
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://cp") as client:  # type: ignore[arg-type]
            yield client
    finally:
        await store.close()


async def test_root_and_bare_ui_redirect_to_the_dashboard(http: httpx.AsyncClient) -> None:
    """GET / and GET /ui answer 307 to /ui/, which serves the page as HTML."""
    for path in ("/", "/ui"):
        reply = await http.get(path)
        assert reply.status_code == 307 and reply.headers["location"] == "/ui/"
    page = await http.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-testid="panel-topology"' in page.text


async def test_every_asset_is_served_with_its_type_and_no_cache(http: httpx.AsyncClient) -> None:
    """Each bundled file is served with its content type and Cache-Control: no-cache."""
    for name, media_type in ASSETS.items():
        reply = await http.get(f"/ui/{name}")
        assert reply.status_code == 200, name
        assert reply.headers["content-type"] == media_type
        assert reply.headers["cache-control"] == "no-cache"
        assert reply.content


async def test_assets_load_nothing_from_the_network(http: httpx.AsyncClient) -> None:
    """No asset names an external URL (CDN, web font): the dashboard works offline."""
    for name in ASSETS:
        text = (await http.get(f"/ui/{name}")).text
        urls = set(re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text)) - {"http://www.w3.org"}
        assert not urls, f"{name} refers to {urls}"
        assert "@import" not in text and "@font-face" not in text


async def test_every_script_and_stylesheet_the_page_names_exists(http: httpx.AsyncClient) -> None:
    """Each src/href in index.html is a bundled asset (a renamed file would break the page)."""
    page = (await http.get("/ui/")).text
    named = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert named and all(name in ASSETS for name in named), named


async def test_unknown_dashboard_file_is_a_json_404(http: httpx.AsyncClient) -> None:
    """An unknown file under /ui/ is 404 with a JSON body that lists the files there are."""
    reply = await http.get("/ui/secret.txt")
    assert reply.status_code == 404
    error = reply.json()["error"]
    assert error["code"] == "not_found" and "app.js" in error["message"]


async def test_dashboard_is_not_in_the_openapi_spec(http: httpx.AsyncClient) -> None:
    """The /ui/ routes stay out of the API's OpenAPI document."""
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert not any(p == "/" or p.startswith("/ui") for p in paths)
