"""The `/v1/` endpoints: one per `ControlPlane` method, plus status, health, snapshot and the watch stream.

Each endpoint is a thin translation: parse the request (pydantic does the validation), call the `Registry`,
return its records. Errors are raised as `jishi.errors` exceptions and turned into JSON by `jishi.server.app`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from jishi.api import wire
from jishi.errors import CompactedError, ControlPlaneError
from jishi.registry import AgentInfo, ClusterStatus, GatewayInfo, Instance, Registry, Route, ServiceSpec
from jishi.server.watch import WatchStreams

__all__ = ["router"]


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _streams(request: Request) -> WatchStreams:
    streams: WatchStreams = request.app.state.streams
    return streams


Reg = Annotated[Registry, Depends(_registry)]
router = APIRouter(prefix="/v1")


def _same_name(path_name: str, body_name: str, what: str) -> None:
    if path_name != body_name:
        raise ValueError(f"the {what} in the URL ({path_name!r}) differs from the one in the body ({body_name!r})")


# ---- cluster ------------------------------------------------------------------------------------------------


@router.get("/health", tags=["cluster"], summary="Liveness of the control plane and its store revision")
async def health(registry: Reg) -> dict[str, object]:
    return {"status": "ok", "revision": await registry.revision()}


@router.get("/status", tags=["cluster"], summary="Services, instances, routes, gateways and agents at one revision")
async def status(registry: Reg) -> ClusterStatus:
    return await registry.status()


@router.get("/snapshot", tags=["cluster"], summary="Every key under a prefix and the revision it was read at")
async def snapshot(registry: Reg, prefix: str = "/jishi/") -> wire.KvReply:
    revision, kvs = await registry.snapshot(prefix)
    return wire.KvReply(revision=revision, kvs=[wire.WireKeyValue.of(kv) for kv in kvs])


@router.get(
    "/watch",
    tags=["cluster"],
    summary="Stream changes under a prefix as newline-delimited JSON",
    description="One event per line from `start_revision` (0: from now on), in revision order; "
    '`{"heartbeat": revision}` lines when idle; a final `{"error": ...}` line if the watch cannot go on.',
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}}, 410: {"model": wire.ErrorReply}},
)
async def watch(
    registry: Reg,
    streams: Annotated[WatchStreams, Depends(_streams)],
    prefix: str = "/jishi/",
    start_revision: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    if streams.closing:
        raise ControlPlaneError(
            "the control plane is shutting down; watch again shortly", code="unavailable", status=503
        )
    if start_revision == 0:
        start_revision = await registry.revision() + 1
    compacted = registry.store.compact_revision
    if start_revision < compacted:  # as in the store (and etcd): the compact revision itself can be watched
        raise CompactedError(start_revision, compacted)
    return StreamingResponse(
        streams.lines(prefix, start_revision),
        media_type="application/x-ndjson",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.post("/apply", tags=["cluster"], summary="Make the services and routes exactly these, in one transaction")
async def apply(registry: Reg, body: wire.ApplyRequest) -> wire.RevisionReply:
    return wire.RevisionReply(revision=await registry.apply(body.services, body.routes))


# ---- leases -------------------------------------------------------------------------------------------------


@router.post("/leases", tags=["leases"], summary="Grant a lease with a TTL")
async def grant_lease(registry: Reg, body: wire.LeaseRequest) -> wire.LeaseReply:
    return wire.LeaseReply(id=await registry.grant_lease(body.ttl), ttl=body.ttl)


@router.post("/leases/{lease_id}/keepalive", tags=["leases"], summary="Restart a lease's TTL")
async def keepalive(registry: Reg, lease_id: int) -> wire.LeaseReply:
    return wire.LeaseReply(id=lease_id, ttl=await registry.keepalive(lease_id))


@router.delete("/leases/{lease_id}", tags=["leases"], status_code=204, summary="Revoke a lease and its keys")
async def revoke_lease(registry: Reg, lease_id: int) -> Response:
    await registry.revoke_lease(lease_id)
    return Response(status_code=204)


# ---- services -----------------------------------------------------------------------------------------------


@router.get("/services", tags=["services"], summary="List the declared services")
async def list_services(registry: Reg) -> list[ServiceSpec]:
    return await registry.list_services()


@router.get("/services/{name}", tags=["services"], summary="One service's desired state")
async def get_service(registry: Reg, name: str) -> ServiceSpec:
    return await registry.get_service(name)


@router.put("/services/{name}", tags=["services"], summary="Create or replace a service")
async def put_service(registry: Reg, name: str, spec: ServiceSpec) -> ServiceSpec:
    _same_name(name, spec.name, "service name")
    await registry.put_service(spec)
    return spec


@router.delete("/services/{name}", tags=["services"], status_code=204, summary="Delete a service")
async def delete_service(registry: Reg, name: str) -> Response:
    await registry.delete_service(name)
    return Response(status_code=204)


@router.post("/services/{name}/scale", tags=["services"], summary="Set a service's instance count")
async def scale(registry: Reg, name: str, body: wire.ScaleRequest) -> ServiceSpec:
    return await registry.scale(name, body.instances)


# ---- instances ----------------------------------------------------------------------------------------------


@router.get("/instances", tags=["instances"], summary="List live instances, of one service or all")
async def list_instances(registry: Reg, service: str | None = None) -> list[Instance]:
    return await registry.list_instances(service)


@router.put(
    "/instances/{service}/{instance_id}",
    tags=["instances"],
    status_code=204,
    summary="Register an instance under a lease",
)
async def register_instance(registry: Reg, service: str, instance_id: str, body: wire.InstanceRegistration) -> Response:
    _same_name(service, body.instance.service, "service")
    _same_name(instance_id, body.instance.id, "instance id")
    await registry.register_instance(body.instance, body.lease)
    return Response(status_code=204)


@router.delete(
    "/instances/{service}/{instance_id}", tags=["instances"], status_code=204, summary="Deregister an instance"
)
async def deregister_instance(registry: Reg, service: str, instance_id: str) -> Response:
    await registry.deregister_instance(service, instance_id)
    return Response(status_code=204)


@router.put("/instances/{service}/{instance_id}/health", tags=["instances"], summary="Report an instance's health")
async def set_health(registry: Reg, service: str, instance_id: str, body: wire.HealthUpdate) -> Instance:
    return await registry.set_health(service, instance_id, body.health, body.output)


@router.post("/instances/{service}/{instance_id}/drain", tags=["instances"], summary="Take an instance out of rotation")
async def set_draining(registry: Reg, service: str, instance_id: str) -> Instance:
    return await registry.set_draining(service, instance_id)


# ---- routes -------------------------------------------------------------------------------------------------


@router.get("/routes", tags=["routes"], summary="List the gateway routes")
async def list_routes(registry: Reg) -> list[Route]:
    return await registry.list_routes()


@router.get("/routes/{name}", tags=["routes"], summary="One route")
async def get_route(registry: Reg, name: str) -> Route:
    return await registry.get_route(name)


@router.put("/routes/{name}", tags=["routes"], summary="Create or replace a route")
async def put_route(registry: Reg, name: str, route: Route) -> Route:
    _same_name(name, route.name, "route name")
    await registry.put_route(route)
    return route


@router.delete("/routes/{name}", tags=["routes"], status_code=204, summary="Delete a route")
async def delete_route(registry: Reg, name: str) -> Response:
    await registry.delete_route(name)
    return Response(status_code=204)


# ---- members ------------------------------------------------------------------------------------------------


@router.get("/gateways", tags=["members"], summary="List running gateways")
async def list_gateways(registry: Reg) -> list[GatewayInfo]:
    return await registry.list_gateways()


@router.put("/gateways/{gateway_id}", tags=["members"], status_code=204, summary="Register a gateway under a lease")
async def register_gateway(registry: Reg, gateway_id: str, body: wire.GatewayRegistration) -> Response:
    _same_name(gateway_id, body.info.id, "gateway id")
    await registry.register_gateway(body.info, body.lease)
    return Response(status_code=204)


@router.get("/agents", tags=["members"], summary="List running agents")
async def list_agents(registry: Reg) -> list[AgentInfo]:
    return await registry.list_agents()


@router.put("/agents/{agent_id}", tags=["members"], status_code=204, summary="Register an agent under a lease")
async def register_agent(registry: Reg, agent_id: str, body: wire.AgentRegistration) -> Response:
    _same_name(agent_id, body.info.id, "agent id")
    await registry.register_agent(body.info, body.lease)
    return Response(status_code=204)


# ---- user KV ------------------------------------------------------------------------------------------------


@router.get("/kv/{key:path}", tags=["kv"], summary="Read a key (or every key under it with ?prefix=true)")
async def kv_get(registry: Reg, key: str, prefix: bool = False) -> wire.KvReply:
    revision, kvs = await registry.kv_range(key, prefix=prefix)  # one read: the revision is that of the values
    return wire.KvReply(revision=revision, kvs=[wire.WireKeyValue.of(kv) for kv in kvs])


@router.put("/kv/{key:path}", tags=["kv"], summary="Write a key")
async def kv_put(registry: Reg, key: str, body: wire.KvPutRequest) -> wire.RevisionReply:
    return wire.RevisionReply(revision=await registry.kv_put(key, body.value))


@router.delete("/kv/{key:path}", tags=["kv"], summary="Delete a key (or every key under it with ?prefix=true)")
async def kv_delete(registry: Reg, key: str, prefix: bool = False) -> dict[str, int]:
    return {"deleted": await registry.kv_delete(key, prefix=prefix)}
