"""The dashboard: static files bundled in the package, served by the control plane at `/ui/`.

    app.include_router(ui.router)      # GET / → 307 /ui/;  GET /ui/ → index.html;  GET /ui/app.js, app.css, …

The page is hand-written HTML, CSS and JavaScript (`jishi/server/dashboard/`) with no build step and nothing
fetched from the internet: it works on an offline machine. Everything it shows comes from the same `/v1/` API
the CLI uses (status, stats, alerts, events; scale and restart as actions), polled once a second.
Assets are read once, on first use, and sent with `Cache-Control: no-cache` so an upgrade shows at once.
"""

from __future__ import annotations

import functools
import logging
from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from jishi.errors import NotFoundError

__all__ = ["ASSETS", "asset", "router"]

log = logging.getLogger(__name__)

ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "draw.js": "text/javascript; charset=utf-8",
    "model.js": "text/javascript; charset=utf-8",
    "panels.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(include_in_schema=False)


@functools.cache
def asset(name: str) -> bytes:
    """The bytes of one dashboard file (a name in `ASSETS`), read from the package."""
    if name not in ASSETS:
        raise NotFoundError(f"no dashboard file {name!r}; the dashboard has {', '.join(sorted(ASSETS))}")
    return resources.files("jishi.server").joinpath("dashboard", name).read_bytes()


def _send(name: str) -> Response:
    return Response(asset(name), media_type=ASSETS[name], headers=_HEADERS)


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
async def ui_bare() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
async def index() -> Response:
    return _send("index.html")


@router.get("/ui/{name}")
async def file(name: str) -> Response:
    return _send(name)
