"""The control plane's ASGI application: the `/v1/` endpoints on a `Registry`, with errors as JSON.

    app = create_app(registry)          # serve with uvicorn, or test with httpx.ASGITransport(app)

Every error a client can see has the body `{"error": {"code": "...", "message": "..."}}` and a status that says
what kind of failure it is (see `jishi.api.wire.error_reply`): 400 invalid request (a bad body, or a store call
wrong in itself: `InvalidRequestError`), 404 unknown name or lease, 409 conflict, 410 compacted revision, 503 store
closed or busy or server stopping (the only ones worth asking again), 500 a bug (logged with its traceback).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from jishi.api import wire
from jishi.errors import JishiError
from jishi.registry import Registry
from jishi.server import alerts, events, reports, ui
from jishi.server.endpoints import router
from jishi.server.watch import WatchStreams

__all__ = ["create_app"]

log = logging.getLogger(__name__)

TAGS = [
    {"name": "cluster", "description": "Whole-cluster reads, the watch stream and declarative apply."},
    {"name": "services", "description": "Desired state: what to run and how many."},
    {"name": "instances", "description": "Live instances, their health and draining; each bound to a lease."},
    {"name": "routes", "description": "How the gateways map requests to services."},
    {"name": "leases", "description": "TTL leases that keep instances, gateways and agents registered."},
    {"name": "members", "description": "Running gateways and agents."},
    {"name": "kv", "description": "The user's own configuration key-value space (/jishi/kv/)."},
    {"name": "events", "description": "What happened, kept with retention; followable as a stream."},
    {"name": "alerts", "description": "Alerts from the rules of `alerting:`, the settings, and silences."},
]
HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 409: "conflict"}


def create_app(registry: Registry, *, streams: WatchStreams | None = None) -> FastAPI:
    """The API on `registry`. `streams` holds the open watch streams (made here if not given)."""
    app = FastAPI(
        title="jishi control plane",
        version="1",
        description="Registry, desired state, routes and KV of a jishi cluster, with watch streams.",
        openapi_tags=TAGS,
    )
    app.state.registry = registry
    app.state.streams = streams if streams is not None else WatchStreams(registry)
    app.include_router(router)
    reports.install(app)  # gateway reports, /v1/stats and /metrics
    app.include_router(ui.router)  # the dashboard at /ui/ (and / redirects there)
    app.state.event_streams = events.EventStreams()
    app.include_router(events.router)  # the event log, restart requests
    app.include_router(alerts.router)  # alerts, alerting settings, silences

    @app.exception_handler(JishiError)
    async def jishi_error(request: Request, exc: JishiError) -> JSONResponse:
        return _reply(request, exc)

    @app.exception_handler(ValidationError)
    async def model_error(request: Request, exc: ValidationError) -> JSONResponse:
        return _reply(request, exc)

    @app.exception_handler(ValueError)
    async def value_error(request: Request, exc: ValueError) -> JSONResponse:
        return _reply(request, exc)

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        body = {"error": {"code": "invalid_request", "message": f"invalid request: {problems}"}}
        return JSONResponse(body, status_code=400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse(
            {"error": {"code": code, "message": message}}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return _reply(request, exc)

    return app


def _reply(request: Request, exc: BaseException) -> JSONResponse:
    status, body = wire.error_reply(exc)
    if status >= 500:
        log.warning("%s %s → %d %s", request.method, request.url.path, status, body["error"]["message"])
    return JSONResponse(body, status_code=status)
