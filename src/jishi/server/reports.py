"""Gateway reports in, traffic stats and Prometheus metrics out.

    POST /v1/gateways/{id}/report    a gateway's cumulative report (every second) → 204; its events are stored
    GET  /v1/stats                   the gateways' traffic per route, service and instance (`StatsBoard.snapshot`)
    GET  /metrics                    the control plane's metrics in Prometheus text format (`jishi.server.metrics`)

`install(app)` adds these to the API app, gives it a `StatsBoard` (`app.state.stats`) that the registry's
reports feed, times every store call (the registry's store is wrapped in an `InstrumentedStore`) and counts
API requests.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from jishi.gateway.stats import ROW_LEN
from jishi.registry import Registry
from jishi.server.metrics import CONTENT_TYPE, ApiCounter, ServerMetrics
from jishi.server.stats import StatsBoard

__all__ = ["GatewayReport", "install", "router"]

router = APIRouter()


class Upstream(BaseModel):
    idle: int = Field(0, ge=0)
    busy: int = Field(0, ge=0)


class GatewayReport(BaseModel):
    """What a gateway reports (`jishi.gateway.stats`); fields this version does not know are kept as they are."""

    model_config = ConfigDict(extra="allow")

    pid: int = 0
    started_at: float
    workers: int = Field(1, ge=0)
    connections: int = Field(0, ge=0)
    upstream: Upstream = Field(default_factory=Upstream)
    rows: list[tuple[str, str, list[int | float]]] = Field(default_factory=list)
    policies: dict[str, dict[str, Any]] = Field(default_factory=dict)
    events: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("rows")
    @classmethod
    def _row_length(cls, rows: list[tuple[str, str, list[int | float]]]) -> list[tuple[str, str, list[int | float]]]:
        for route, instance, row in rows:
            if len(row) != ROW_LEN:
                raise ValueError(f"row {route!r}/{instance!r} has {len(row)} numbers, expected {ROW_LEN}")
        return rows


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _board(request: Request) -> StatsBoard:
    board: StatsBoard = request.app.state.stats
    return board


Reg = Annotated[Registry, Depends(_registry)]
Board = Annotated[StatsBoard, Depends(_board)]


@router.post(
    "/v1/gateways/{gateway_id}/report",
    tags=["members"],
    status_code=204,
    summary="A gateway's cumulative traffic report and its recent events (sent every second)",
)
async def report_gateway(gateway_id: str, body: GatewayReport, registry: Reg) -> Response:
    data = body.model_dump()
    data["rows"] = [[route, instance, row] for route, instance, row in data["rows"]]
    await registry.report_gateway(gateway_id, data)
    return Response(status_code=204)


@router.get(
    "/v1/stats",
    tags=["cluster"],
    summary="Traffic per route, service and instance over the live gateways",
    description="Totals since the gateways started; `rps`, `error_ratio`, `p50_ms` and `p99_ms` over the last "
    "`window` seconds; per-route policy state (breaker, rejections, retries, ejected instances).",
)
async def stats(board: Board) -> dict[str, Any]:
    return board.snapshot(time.time())


@router.get(
    "/metrics",
    tags=["cluster"],
    summary="The control plane's metrics (Prometheus text format)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}}},
)
async def metrics(request: Request, registry: Reg, board: Board) -> Response:
    server_metrics: ServerMetrics = request.app.state.metrics
    return Response(await server_metrics.render(registry, board), media_type=CONTENT_TYPE)


def install(app: FastAPI) -> None:
    """Add the report, stats and metrics endpoints to `app` (whose `state.registry` is set); see the module doc."""
    registry: Registry = app.state.registry
    board = StatsBoard()
    server_metrics = ServerMetrics()
    registry.store = server_metrics.instrument(registry.store)
    registry.report_sink = lambda gateway_id, data: board.ingest(gateway_id, data, time.time())
    app.state.stats = board
    app.state.metrics = server_metrics
    app.add_middleware(ApiCounter, counter=server_metrics.api_requests)
    app.include_router(router)
