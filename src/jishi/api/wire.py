"""The control plane's HTTP wire format, shared by the server (`jishi.server`) and its client (`HttpControlPlane`).

- Request and reply bodies are the pydantic models below (and the registry's own models), so the server's
  OpenAPI spec documents exactly what the client sends.
- Keys and values cross as UTF-8 text (`WireKeyValue`).
- The watch stream is newline-delimited JSON, one object per line:
      {"type": "put"|"delete", "key", "value", "create_revision", "mod_revision", "version", "lease"}
      {"heartbeat": <store revision>}            every few seconds, and first thing after the stream opens
      {"error": {"code", "message", ...}}        last line when the watch cannot go on (e.g. compacted)
- Every error is `{"error": {"code": "...", "message": "..."}}` with an HTTP status; `error_reply` and
  `error_from_reply` translate between the exception hierarchy of `jishi.errors` and that shape, both ways.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from jishi.errors import (
    CompactedError,
    ControlPlaneError,
    FutureRevisionError,
    InvalidRequestError,
    JishiError,
    LeaseNotFoundError,
    NotFoundError,
    StoreError,
)
from jishi.registry.model import AgentInfo, EventRecord, GatewayInfo, Health, Instance, Route, ServiceSpec
from jishi.store import Event, EventType, KeyValue

__all__ = [
    "AgentRegistration",
    "ApplyRequest",
    "ErrorBody",
    "ErrorReply",
    "EventListReply",
    "GatewayRegistration",
    "HealthUpdate",
    "InstanceRegistration",
    "KvPutRequest",
    "KvReply",
    "LeaseReply",
    "LeaseRequest",
    "RestartBody",
    "RevisionReply",
    "ScaleRequest",
    "SilenceRequest",
    "WireKeyValue",
    "error_from_reply",
    "error_reply",
    "event_from_line",
    "event_line",
]


class WireKeyValue(BaseModel):
    key: str
    value: str
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @classmethod
    def of(cls, kv: KeyValue) -> WireKeyValue:
        return cls(
            key=kv.key.decode(errors="replace"),
            value=kv.value.decode(errors="replace"),
            create_revision=kv.create_revision,
            mod_revision=kv.mod_revision,
            version=kv.version,
            lease=kv.lease,
        )

    def to_kv(self) -> KeyValue:
        return KeyValue(
            self.key.encode(), self.value.encode(), self.create_revision, self.mod_revision, self.version, self.lease
        )


class KvReply(BaseModel):
    revision: int
    kvs: list[WireKeyValue]


class KvPutRequest(BaseModel):
    value: str


class RevisionReply(BaseModel):
    revision: int


class LeaseRequest(BaseModel):
    ttl: float = Field(gt=0, description="seconds the lease lives without a keep-alive")


class LeaseReply(BaseModel):
    id: int
    ttl: float


class InstanceRegistration(BaseModel):
    instance: Instance
    lease: int = Field(description="the lease the instance is attached to; it disappears when the lease ends")


class GatewayRegistration(BaseModel):
    info: GatewayInfo
    lease: int


class AgentRegistration(BaseModel):
    info: AgentInfo
    lease: int


class HealthUpdate(BaseModel):
    health: Health
    output: str = ""


class ScaleRequest(BaseModel):
    instances: int = Field(ge=0)


class ApplyRequest(BaseModel):
    services: list[ServiceSpec] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)


class EventListReply(BaseModel):
    events: list[EventRecord]


class RestartBody(BaseModel):
    reason: str = ""


class SilenceRequest(BaseModel):
    matchers: dict[str, str] | str = Field(
        description='label = value pairs, or matcher text as in alert rules: service="catalog",severity=~"crit.*"'
    )
    duration: float = Field(gt=0, description="seconds the silence holds, from now")
    comment: str = ""
    created_by: str = ""


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorReply(BaseModel):
    error: ErrorBody


# ---- watch stream lines ---------------------------------------------------------------------------------


def event_line(event: Event) -> bytes:
    kv = event.kv
    return _line(
        {
            "type": event.type.value,
            "key": kv.key.decode(errors="replace"),
            "value": kv.value.decode(errors="replace"),
            "create_revision": kv.create_revision,
            "mod_revision": kv.mod_revision,
            "version": kv.version,
            "lease": kv.lease,
        }
    )


def event_from_line(data: dict[str, Any]) -> Event:
    kv = KeyValue(
        data["key"].encode(),
        data["value"].encode(),
        data["create_revision"],
        data["mod_revision"],
        data["version"],
        data.get("lease", 0),
    )
    return Event(EventType(data["type"]), kv)


def heartbeat_line(revision: int) -> bytes:
    return _line({"heartbeat": revision})


def error_line(exc: BaseException) -> bytes:
    return _line(error_reply(exc)[1])


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


# ---- errors, both ways ----------------------------------------------------------------------------------


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one human line per problem: `field.path: what is wrong`."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def error_reply(exc: BaseException) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for an exception raised while serving a request."""
    extra: dict[str, Any] = {}
    if isinstance(exc, CompactedError):
        status, extra = 410, {"requested": exc.requested, "compact_revision": exc.compact_revision}
    elif isinstance(exc, LeaseNotFoundError):
        status, extra = 404, {"lease_id": exc.lease_id}
    elif isinstance(exc, NotFoundError):
        status = 404
    elif isinstance(exc, FutureRevisionError):
        status = 400
    elif isinstance(exc, InvalidRequestError):
        status = 409 if exc.code == "lease_exists" else 400  # wrong in itself: asking again cannot help
    elif isinstance(exc, StoreError):
        status = 503  # the store is closed (shutting down) or busy: try again shortly
    elif isinstance(exc, ControlPlaneError):
        status = exc.status or 502
    elif isinstance(exc, ValidationError):
        return 400, {"error": {"code": "invalid_request", "message": validation_message(exc)}}
    elif isinstance(exc, ValueError):
        return 400, {"error": {"code": "invalid_request", "message": str(exc)}}
    elif isinstance(exc, JishiError):
        status = 500
    else:
        return 500, {"error": {"code": "internal", "message": f"internal error: {type(exc).__name__}: {exc}"}}
    assert isinstance(exc, JishiError)
    return status, {"error": {"code": exc.code, "message": exc.message, **extra}}


def error_from_reply(status: int, body: Any) -> JishiError:
    """The exception a client raises for an error reply (the inverse of `error_reply`)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return ControlPlaneError(f"the control plane answered HTTP {status}: {body!r:.200}", status=status)
    code, message = str(error.get("code", "unknown")), str(error.get("message", ""))
    if code == "not_found":
        return NotFoundError(message)
    if code == "lease_not_found" and isinstance(error.get("lease_id"), int):
        return LeaseNotFoundError(error["lease_id"])
    if code == "compacted" and isinstance(error.get("requested"), int):
        return CompactedError(error["requested"], int(error.get("compact_revision", 0)))
    if code == "future_revision":
        return FutureRevisionError(message)
    return ControlPlaneError(message, code=code, status=status)
