"""`HttpControlPlane`: the `ControlPlane` protocol over the server's HTTP API (httpx, async).

    cp = HttpControlPlane("http://127.0.0.1:8500")
    lease = await cp.grant_lease(3.0)
    async for event in cp.watch("/jishi/", revision + 1): ...
    await cp.aclose()

Every call is one request through `_call`, which turns the server's JSON errors back into the exceptions the
in-process `Registry` raises (NotFoundError, LeaseNotFoundError, CompactedError, otherwise ControlPlaneError
with the server's code and status) and any transport failure into `ControlPlaneUnavailable`. `watch()` resumes
transparently across lost connections and server restarts (see `jishi.api.resume`). Pass `transport=` to run
against an in-process app (`httpx.ASGITransport`) or a `httpx.MockTransport` in tests.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, RootModel, TypeAdapter

from jishi.api import wire
from jishi.api.event_stream import follow_events
from jishi.api.resume import resumable_watch
from jishi.errors import ControlPlaneError, ControlPlaneUnavailable
from jishi.registry.model import (
    AgentInfo,
    EventRecord,
    GatewayInfo,
    Health,
    Instance,
    RestartRequest,
    Route,
    ServiceSpec,
)
from jishi.registry.registry import ClusterStatus
from jishi.store import Event, KeyValue

if TYPE_CHECKING:
    from jishi.alerting.rules import AlertingConfig, SilenceSpec
    from jishi.registry.protocol import ControlPlane

__all__ = ["HttpControlPlane"]

log = logging.getLogger(__name__)

_INSTANCES = TypeAdapter(list[Instance])
_SERVICES = TypeAdapter(list[ServiceSpec])
_ROUTES = TypeAdapter(list[Route])
_GATEWAYS = TypeAdapter(list[GatewayInfo])
_AGENTS = TypeAdapter(list[AgentInfo])


def _seg(value: str) -> str:
    return quote(value, safe="")


class HttpControlPlane:
    """The control plane at `base_url`, e.g. "http://127.0.0.1:8500". Close with `await aclose()`."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        watch_idle_timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._watch_idle = watch_idle_timeout
        self._timeout = timeout
        self._client = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HttpControlPlane:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, *, body: BaseModel | None = None, **params: Any) -> Any:
        """One request; the decoded JSON reply (None for 204); errors mapped as the module doc says."""
        content = body.model_dump_json().encode() if body is not None else None
        headers = {"content-type": "application/json"} if content is not None else None
        query = {k: _param(v) for k, v in params.items() if v is not None}
        try:
            response = await self._client.request(method, path, content=content, headers=headers, params=query)
        except httpx.TransportError as exc:
            raise ControlPlaneUnavailable(
                f"cannot reach the control plane at {self.base_url} ({method} {path}): {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code == 204:
            return None
        try:
            data = response.json()
        except json.JSONDecodeError:
            if response.status_code < 400:  # a success that is not JSON: something else answers at that address
                raise ControlPlaneError(
                    f"{self.base_url} answered {method} {path} with {response.status_code} and a body that is not "
                    f"JSON ({response.text[:80]!r}): is a jishi control plane listening there?",
                    code="not_a_control_plane",
                    status=response.status_code,
                ) from None
            data = response.text
        if response.status_code >= 400:
            raise wire.error_from_reply(response.status_code, data)
        return data

    # ---- raw reads and watches ------------------------------------------------------------------------

    async def snapshot(self, prefix: str) -> tuple[int, list[KeyValue]]:
        reply = wire.KvReply.model_validate(await self._call("GET", "/v1/snapshot", prefix=prefix))
        return reply.revision, [kv.to_kv() for kv in reply.kvs]

    async def revision(self) -> int:
        return int((await self._call("GET", "/v1/health"))["revision"])

    async def status(self) -> ClusterStatus:
        return ClusterStatus.model_validate(await self._call("GET", "/v1/status"))

    async def watch(self, prefix: str, start_revision: int) -> AsyncIterator[Event]:
        """Events under `prefix` from `start_revision` (0: from now on), resuming across reconnects."""
        if start_revision <= 0:
            start_revision = await self.revision() + 1
        async for event in resumable_watch(
            self._client, prefix, start_revision, idle_timeout=self._watch_idle, connect_timeout=self._timeout
        ):
            yield event

    # ---- leases ---------------------------------------------------------------------------------------

    async def grant_lease(self, ttl: float) -> int:
        return int((await self._call("POST", "/v1/leases", body=wire.LeaseRequest(ttl=ttl)))["id"])

    async def keepalive(self, lease_id: int) -> float:
        return float((await self._call("POST", f"/v1/leases/{lease_id}/keepalive"))["ttl"])

    async def revoke_lease(self, lease_id: int) -> None:
        await self._call("DELETE", f"/v1/leases/{lease_id}")

    # ---- instances ------------------------------------------------------------------------------------

    def _instance_path(self, service: str, instance_id: str) -> str:
        return f"/v1/instances/{_seg(service)}/{_seg(instance_id)}"

    async def register_instance(self, instance: Instance, lease_id: int) -> None:
        body = wire.InstanceRegistration(instance=instance, lease=lease_id)
        await self._call("PUT", self._instance_path(instance.service, instance.id), body=body)

    async def set_health(self, service: str, instance_id: str, health: Health, output: str = "") -> Instance:
        body = wire.HealthUpdate(health=health, output=output)
        path = self._instance_path(service, instance_id) + "/health"
        return Instance.model_validate(await self._call("PUT", path, body=body))

    async def set_draining(self, service: str, instance_id: str) -> Instance:
        path = self._instance_path(service, instance_id) + "/drain"
        return Instance.model_validate(await self._call("POST", path))

    async def deregister_instance(self, service: str, instance_id: str) -> None:
        await self._call("DELETE", self._instance_path(service, instance_id))

    async def list_instances(self, service: str | None = None) -> list[Instance]:
        return _INSTANCES.validate_python(await self._call("GET", "/v1/instances", service=service))

    # ---- services -------------------------------------------------------------------------------------

    async def list_services(self) -> list[ServiceSpec]:
        return _SERVICES.validate_python(await self._call("GET", "/v1/services"))

    async def get_service(self, name: str) -> ServiceSpec:
        return ServiceSpec.model_validate(await self._call("GET", f"/v1/services/{_seg(name)}"))

    async def put_service(self, spec: ServiceSpec) -> None:
        await self._call("PUT", f"/v1/services/{_seg(spec.name)}", body=spec)

    async def delete_service(self, name: str) -> None:
        await self._call("DELETE", f"/v1/services/{_seg(name)}")

    async def scale(self, name: str, instances: int) -> ServiceSpec:
        body = wire.ScaleRequest.model_construct(instances=instances)  # the server validates and explains
        return ServiceSpec.model_validate(await self._call("POST", f"/v1/services/{_seg(name)}/scale", body=body))

    # ---- routes ---------------------------------------------------------------------------------------

    async def list_routes(self) -> list[Route]:
        return _ROUTES.validate_python(await self._call("GET", "/v1/routes"))

    async def get_route(self, name: str) -> Route:
        return Route.model_validate(await self._call("GET", f"/v1/routes/{_seg(name)}"))

    async def put_route(self, route: Route) -> None:
        await self._call("PUT", f"/v1/routes/{_seg(route.name)}", body=route)

    async def delete_route(self, name: str) -> None:
        await self._call("DELETE", f"/v1/routes/{_seg(name)}")

    async def apply(self, services: Sequence[ServiceSpec], routes: Sequence[Route]) -> int:
        body = wire.ApplyRequest(services=list(services), routes=list(routes))
        return int((await self._call("POST", "/v1/apply", body=body))["revision"])

    # ---- members --------------------------------------------------------------------------------------

    async def register_gateway(self, info: GatewayInfo, lease_id: int) -> None:
        body = wire.GatewayRegistration(info=info, lease=lease_id)
        await self._call("PUT", f"/v1/gateways/{_seg(info.id)}", body=body)

    async def list_gateways(self) -> list[GatewayInfo]:
        return _GATEWAYS.validate_python(await self._call("GET", "/v1/gateways"))

    async def register_agent(self, info: AgentInfo, lease_id: int) -> None:
        await self._call("PUT", f"/v1/agents/{_seg(info.id)}", body=wire.AgentRegistration(info=info, lease=lease_id))

    async def list_agents(self) -> list[AgentInfo]:
        return _AGENTS.validate_python(await self._call("GET", "/v1/agents"))

    async def report_gateway(self, gateway_id: str, report: dict[str, Any]) -> None:
        body = RootModel[dict[str, Any]](report)
        await self._call("POST", f"/v1/gateways/{_seg(gateway_id)}/report", body=body)

    # ---- user KV --------------------------------------------------------------------------------------

    async def kv_get(self, key: str, *, prefix: bool = False) -> list[KeyValue]:
        reply = wire.KvReply.model_validate(await self._call("GET", f"/v1/kv/{quote(key)}", prefix=prefix))
        return [kv.to_kv() for kv in reply.kvs]

    async def kv_put(self, key: str, value: str) -> int:
        return int((await self._call("PUT", f"/v1/kv/{quote(key)}", body=wire.KvPutRequest(value=value)))["revision"])

    async def kv_delete(self, key: str, *, prefix: bool = False) -> int:
        return int((await self._call("DELETE", f"/v1/kv/{quote(key)}", prefix=prefix))["deleted"])

    # ---- events ---------------------------------------------------------------------------------------

    async def record_event(self, event: EventRecord) -> EventRecord:
        return EventRecord.model_validate(await self._call("POST", "/v1/events", body=event))

    async def events(
        self,
        *,
        since: str | None = None,
        limit: int = 100,
        kind: str | None = None,
        subject: str | None = None,
    ) -> list[EventRecord]:
        reply = await self._call("GET", "/v1/events", since=since, limit=limit, kind=kind, subject=subject)
        return wire.EventListReply.model_validate(reply).events

    async def follow_events(
        self, since: str | None = None, *, kind: str | None = None, subject: str | None = None
    ) -> AsyncIterator[EventRecord]:
        """Events after the id `since` (None: from now on), then new ones, resuming across reconnects."""
        async for event in follow_events(
            self._client,
            since,
            kind=kind,
            subject=subject,
            idle_timeout=self._watch_idle,
            connect_timeout=self._timeout,
        ):
            yield event

    # ---- restart requests -----------------------------------------------------------------------------

    async def request_restart(self, service: str, instance_id: str, reason: str = "") -> RestartRequest:
        path = self._instance_path(service, instance_id) + "/restart"
        reply = await self._call("POST", path, body=wire.RestartBody(reason=reason))
        return RestartRequest(
            service=service, instance=instance_id, requested_at=float(reply["requested_at"]), reason=reason
        )

    async def clear_restart(self, service: str, instance_id: str) -> None:
        await self._call("DELETE", self._instance_path(service, instance_id) + "/restart")

    # ---- alerting -------------------------------------------------------------------------------------

    async def alerts(self) -> dict[str, Any]:
        """`GET /v1/alerts`: {"alerts": [...pending and firing...], "silences": [...], "inactive_rules": [...]}."""
        reply: dict[str, Any] = await self._call("GET", "/v1/alerts")
        return reply

    async def put_alerting(self, config: AlertingConfig) -> bool:
        """Store the alerting settings; False when they were already exactly these."""
        return bool((await self._call("PUT", "/v1/alerting", body=config))["changed"])

    async def get_alerting(self) -> AlertingConfig | None:
        """The stored settings; SMTP passwords and webhook header values come back masked."""
        from jishi.alerting.rules import AlertingConfig

        reply = await self._call("GET", "/v1/alerting")
        return None if reply.get("config") is None else AlertingConfig.model_validate(reply["config"])

    async def add_silence(
        self, matchers: dict[str, str] | str, *, duration: float, comment: str = "", created_by: str = ""
    ) -> SilenceSpec:
        from jishi.alerting.rules import SilenceSpec

        body = wire.SilenceRequest.model_construct(
            matchers=matchers, duration=duration, comment=comment, created_by=created_by
        )
        return SilenceSpec.model_validate(await self._call("POST", "/v1/silences", body=body))

    async def list_silences(self) -> list[SilenceSpec]:
        from jishi.alerting.rules import SilenceSpec

        return [SilenceSpec.model_validate(s) for s in (await self._call("GET", "/v1/silences"))["silences"]]

    async def remove_silence(self, silence_id: str) -> None:
        await self._call("DELETE", f"/v1/silences/{_seg(silence_id)}")


def _param(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


if TYPE_CHECKING:  # mypy checks that HttpControlPlane satisfies the protocol

    def _conforms(client: HttpControlPlane) -> ControlPlane:
        return client
