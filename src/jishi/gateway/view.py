"""The gateway's view of the registry: the routes and instances it routes by, kept from snapshot + watch.

`RegistryView` holds the decoded records of `/jishi/routes/` and `/jishi/instances/` and the revision they
are current at. `reset` replaces everything (a fresh snapshot), `apply` folds in one watch event and says
whether routing may have changed, and `table` builds the routing table. A record that does not decode is
logged and left out; it never stops the gateway. `dump`/`restore` give the on-disk snapshot form.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError

from jishi.core.routing import RoutingTable
from jishi.registry.model import INSTANCES, ROUTES, Instance, Route
from jishi.store import Event, EventType, KeyValue

__all__ = ["SNAPSHOT_FORMAT", "RegistryView"]

log = logging.getLogger(__name__)

SNAPSHOT_FORMAT = 1


class RegistryView:
    """Routes and instances by store key, with the revision of the last change applied."""

    def __init__(self) -> None:
        self.revision = 0
        self.routes: dict[str, Route] = {}
        self.instances: dict[str, Instance] = {}
        self.generations: dict[str, int] = {}  # "service/id" → mod revision of the instance record

    def reset(self, revision: int, kvs: Iterable[KeyValue]) -> None:
        """Replace everything by a snapshot taken at `revision`."""
        self.routes, self.instances, self.generations = {}, {}, {}
        for kv in kvs:
            self._put(kv.key.decode(), kv.value, kv.mod_revision)
        self.revision = revision

    def apply(self, event: Event) -> bool:
        """Fold in one watch event; True if it touched a route or an instance."""
        key = event.kv.key.decode()
        self.revision = max(self.revision, event.kv.mod_revision)
        if event.type is EventType.PUT:
            return self._put(key, event.kv.value, event.kv.mod_revision)
        if key.startswith(ROUTES):
            return self.routes.pop(key, None) is not None
        if key.startswith(INSTANCES):
            inst = self.instances.pop(key, None)
            if inst is not None:
                self.generations.pop(f"{inst.service}/{inst.id}", None)
            return inst is not None
        return False

    def _put(self, key: str, value: bytes, mod_revision: int) -> bool:
        try:
            if key.startswith(ROUTES):
                self.routes[key] = Route.model_validate_json(value)
                return True
            if key.startswith(INSTANCES):
                inst = Instance.model_validate_json(value)
                self.instances[key] = inst
                self.generations[f"{inst.service}/{inst.id}"] = mod_revision
                return True
        except ValidationError as exc:
            log.error("ignoring %s: its value is not a valid record: %s", key, exc)
        return False

    def table(self, previous: RoutingTable | None = None) -> RoutingTable:
        """The routing table of this view (balancer state carried over from `previous`)."""
        return RoutingTable.build(
            self.routes.values(), self.instances.values(), previous=previous, generations=self.generations
        )

    def dump(self) -> dict[str, Any]:
        """The JSON-able snapshot form."""
        return {
            "format": SNAPSHOT_FORMAT,
            "revision": self.revision,
            "routes": [r.model_dump(mode="json") for r in self.routes.values()],
            "instances": [
                {"record": i.model_dump(mode="json"), "mod_revision": self.generations.get(f"{i.service}/{i.id}", 0)}
                for i in self.instances.values()
            ],
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> RegistryView:
        """A view from `dump()` output; ValueError if it is not one."""
        if data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unknown snapshot format {data.get('format')!r} (expected {SNAPSHOT_FORMAT})")
        view = cls()
        try:
            for raw in data["routes"]:
                route = Route.model_validate(raw)
                view.routes[ROUTES + route.name] = route
            for item in data["instances"]:
                inst = Instance.model_validate(item["record"])
                view.instances[inst.key] = inst
                view.generations[f"{inst.service}/{inst.id}"] = int(item.get("mod_revision", 0))
            view.revision = int(data["revision"])
        except (KeyError, TypeError, ValidationError) as exc:
            raise ValueError(f"snapshot does not hold valid routes and instances: {exc}") from exc
        return view
