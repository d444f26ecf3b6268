"""From what a user writes in jishi.yaml to what the models validate — the conveniences of the file format.

    services.<name>          the key is the service's name
    command: "a b {port}"    a string is split like a shell would (shlex); a list is taken as the argv
    env: {N: 3}              values become strings (true/false for booleans)
    cwd: ./svc               relative to the file's folder, made absolute; default: the file's folder
    interval: 500ms          durations: a number of seconds or "250ms", "2s", "1.5m", "1h"
    max_body_size: 100MiB    sizes (gateway.limits): a number of bytes or "32KiB", "100MiB", "1GB"
    routes: {name: {...}}    routes as a mapping (the key is the name) or a list of mappings with `name`
    service: catalog         a route's shorthand for `backends: [{service: catalog}]`
    services.<n>.policies    traffic policies (breaker, rate_limit, lb, ...) for every route whose backends are
                             all that service; a route's own section wins (`SERVICE_POLICIES` lists them)
    access_log.path          a route's access log: relative to the file's folder, made absolute
    upstream_tls.ca/cert/key relative to the file's folder, made absolute (routes and services.<n>.policies)
    {python} {gateway} {control_plane} {data_dir} {config_dir}   replaced in commands, env values and cwd

`{port}` is left alone: the agent replaces it with each instance's port. Everything here is a pure function of
the parsed document; problems found are returned, not raised, so one run reports them all.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from jishi.config._model import check_listen, listen_url
from jishi.config._problems import Aliases, Problem
from jishi.config._yaml import Path
from jishi.config.size import SIZE_FIX, parse_size
from jishi.registry.policies import parse_duration

__all__ = ["Normalized", "Overrides", "normalize", "parse_duration"]

SERVICE_DURATIONS = ("drain_seconds", "stop_timeout", "lease_ttl")
CHECK_DURATIONS = ("interval", "timeout", "deregister_critical_after")
RESTART_DURATIONS = ("initial_delay", "max_delay", "reset_after")
ROUTE_DURATIONS = ("connect_timeout", "read_timeout")
LIMIT_DURATIONS = ("header_timeout", "body_timeout", "keepalive_timeout", "send_timeout", "request_timeout")
LIMIT_SIZES = ("max_head_size", "max_body_size")
# The route policy sections a service may set for the routes that lead to it. Rewrites and access logs are a
# route's own business, so they stay on routes.
SERVICE_POLICIES = (
    "lb",
    "health_check",
    "outlier",
    "retry",
    "hedge",
    "timeout",
    "rate_limit",
    "concurrency",
    "bulkhead",
    "breaker",
    "fallback",
    "upstream_tls",
)
DURATION_FIX = 'write seconds as a number, or a string like "500ms", "2s", "1m"'


@dataclass(frozen=True)
class Overrides:
    """Command-line values that win over the file's (so tests and second copies can use other ports)."""

    server_listen: str | None = None
    gateway_listen: str | None = None
    data_dir: str | None = None


@dataclass
class Normalized:
    document: dict[str, Any]
    aliases: Aliases
    problems: list[Problem]
    # service name → its `policies:` mapping and where it was written
    service_policies: dict[str, tuple[dict[str, Any], Path]] = dataclasses.field(default_factory=dict)


def normalize(raw: Any, config_dir: FsPath, overrides: Overrides, python: str) -> Normalized:
    """Rewrite the parsed document into the models' shape; see the module doc for every rule."""
    out = Normalized({}, {}, [])
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        out.problems.append(
            Problem(
                (),
                f"the file must be a mapping of sections, got {type(raw).__name__}",
                "start with top-level keys such as `services:` and `routes:`",
            )
        )
        return out
    doc = dict(raw)
    server = _section(doc, "server", out)
    gateway = _section(doc, "gateway", out)
    if overrides.server_listen:
        server["listen"] = overrides.server_listen
    if overrides.gateway_listen:
        gateway["listen"] = overrides.gateway_listen
    if overrides.data_dir:
        server["data_dir"] = overrides.data_dir
    data_dir = _resolve(str(server.get("data_dir", ".jishi")), config_dir)
    server["data_dir"] = str(data_dir)
    if isinstance(gateway.get("access_log"), str):
        gateway["access_log"] = str(_resolve(gateway["access_log"], config_dir))
    _resolve_tls_paths(gateway.get("tls"), config_dir)
    if isinstance(gateway.get("limits"), dict):
        gateway["limits"] = limits = dict(gateway["limits"])
        _durations(limits, LIMIT_DURATIONS, ("gateway", "limits"), out)
        _sizes(limits, LIMIT_SIZES, ("gateway", "limits"), out)
    places = {
        "{python}": python,
        "{config_dir}": str(config_dir),
        "{data_dir}": str(data_dir),
        "{gateway}": _url(gateway.get("listen", "127.0.0.1:8080")),
        "{control_plane}": _url(server.get("listen", "127.0.0.1:8500")),
    }
    if "services" in doc:
        doc["services"] = _services(doc["services"], config_dir, places, out)
    if "routes" in doc:
        doc["routes"] = _routes(doc["routes"], config_dir, out)
    out.document = doc
    return out


def _section(doc: dict[str, Any], name: str, out: Normalized) -> dict[str, Any]:
    value = doc.get(name)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        out.problems.append(Problem((name,), f"must be a mapping, got {value!r}", "write `key: value` lines under it"))
        value = {}
    doc[name] = value = dict(value)
    return value


def _resolve_tls_paths(tls: Any, config_dir: FsPath) -> None:
    """`gateway.tls`: certificate and key paths are relative to the file's folder (in place; shapes are left to
    validation)."""
    if not isinstance(tls, dict):
        return
    sni = tls.get("sni")
    entries = [tls, *(e for e in sni if isinstance(e, dict))] if isinstance(sni, list) else [tls]
    for entry in entries:
        for field in ("cert", "key"):
            if isinstance(entry.get(field), str):
                entry[field] = str(_resolve(entry[field], config_dir))


def _url(listen: Any) -> str:
    try:
        return listen_url(check_listen(str(listen)))
    except ValueError:
        return "http://127.0.0.1:0"  # the listen value itself is reported by validation


def _resolve(path: str, base: FsPath) -> FsPath:
    p = FsPath(path).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _substitute(text: str, places: dict[str, str]) -> str:
    for placeholder, value in places.items():
        text = text.replace(placeholder, value)
    return text


def _services(raw: Any, config_dir: FsPath, places: dict[str, str], out: Normalized) -> Any:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        return raw  # validation says "must be a mapping"
    services: dict[Any, Any] = {}
    for name, body in raw.items():
        at: Path = ("services", name)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            services[name] = body
            continue
        spec = dict(body)
        if "name" not in spec:
            spec["name"] = name
            out.aliases[(*at, "name")] = at
        elif spec["name"] != name:
            out.problems.append(Problem((*at, "name"), f"differs from the key {name!r}", "remove `name:`"))
        _command(spec, at, places, out)
        _service_policies(spec, name, at, out)
        if isinstance(spec.get("env"), dict):
            spec["env"] = {k: _substitute(_text(v), places) for k, v in spec["env"].items()}
        if spec.get("cwd") is None:
            spec["cwd"] = str(config_dir)  # commands run next to the file that names them
        elif isinstance(spec["cwd"], str):
            spec["cwd"] = str(_resolve(_substitute(spec["cwd"], places), config_dir))
        _durations(spec, SERVICE_DURATIONS, at, out)
        for section, fields in (("health_check", CHECK_DURATIONS), ("restart", RESTART_DURATIONS)):
            if isinstance(spec.get(section), dict):
                spec[section] = dict(spec[section])
                _durations(spec[section], fields, (*at, section), out)
        services[name] = spec
    return services


def _command(spec: dict[str, Any], at: Path, places: dict[str, str], out: Normalized) -> None:
    command = spec.get("command")
    if isinstance(command, str):
        try:
            command = shlex.split(command)
        except ValueError as exc:
            out.problems.append(
                Problem(
                    (*at, "command"),
                    f"cannot be split into arguments: {exc}",
                    "close the quote, or write the command as a list",
                )
            )
            return
    if isinstance(command, list):
        spec["command"] = [_substitute(_text(part), places) for part in command]


def _text(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value  # strings stay; anything else is reported by validation


def _durations(body: dict[str, Any], fields: tuple[str, ...], at: Path, out: Normalized) -> None:
    for field in fields:
        if body.get(field) is None:
            continue
        try:
            body[field] = parse_duration(body[field])
        except ValueError as exc:
            out.problems.append(Problem((*at, field), str(exc), DURATION_FIX))
            body[field] = 1.0  # keep validating the rest


def _sizes(body: dict[str, Any], fields: tuple[str, ...], at: Path, out: Normalized) -> None:
    for field in fields:
        if body.get(field) is None:
            continue
        try:
            body[field] = parse_size(body[field])
        except ValueError as exc:
            out.problems.append(Problem((*at, field), str(exc), SIZE_FIX))
            body[field] = 1 << 20  # keep validating the rest


def _service_policies(spec: dict[str, Any], name: Any, at: Path, out: Normalized) -> None:
    """Take `policies:` off a service (it is not part of the service record) and keep it for its routes."""
    if "policies" not in spec:
        return
    policies = spec.pop("policies")
    where: Path = (*at, "policies")
    if policies is None:
        return
    if not isinstance(policies, dict):
        fix = "write `breaker: {...}` lines under it"
        out.problems.append(Problem(where, f"must be a mapping, got {policies!r}", fix))
        return
    for key in policies:
        if key not in SERVICE_POLICIES:
            fix = f"use one of: {', '.join(SERVICE_POLICIES)}"
            if key in ("rewrite", "access_log"):
                fix = f"set `{key}` on the route instead: it belongs to a route"
            out.problems.append(Problem((*where, key), "is not a policy a service can set", fix))
    if isinstance(name, str):
        out.service_policies[name] = ({k: v for k, v in policies.items() if k in SERVICE_POLICIES}, where)


def _inherit(route: dict[str, Any], index: int, out: Normalized) -> None:
    """A route whose backends are all one service takes that service's policies it does not set itself."""
    backends = route.get("backends")
    if not isinstance(backends, list):
        return
    names = {b.get("service") for b in backends if isinstance(b, dict)}
    if len(names) != 1:
        return
    found = out.service_policies.get(str(next(iter(names))))
    if found is None:
        return
    policies, where = found
    for key, value in policies.items():
        if key not in route:
            route[key] = value
            out.aliases[("routes", index, key)] = (*where, key)


def _routes(raw: Any, config_dir: FsPath, out: Normalized) -> Any:
    if raw is None:
        return []
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = list(enumerate(raw))
    else:
        return raw  # validation says "must be a list"
    routes = []
    for index, (key, body) in enumerate(items):
        at: Path = ("routes", key)
        out.aliases[("routes", index)] = at
        if not isinstance(body, dict):
            routes.append(body)
            continue
        route = dict(body)
        if isinstance(key, str) and "name" not in route:
            route["name"] = key
            out.aliases[("routes", index, "name")] = at
        if "service" in route:
            if "backends" in route:
                out.problems.append(
                    Problem(
                        (*at, "service"),
                        "give either `service` or `backends`, not both",
                        "keep `backends:` and list the service there",
                    )
                )
            backend = route.pop("service")
            route["backends"] = [{"service": backend}]
            out.aliases[("routes", index, "backends")] = (*at, "service")
            out.aliases[("routes", index, "backends", 0, "service")] = (*at, "service")
            out.aliases[("routes", index, "backends", 0)] = (*at, "service")
        _durations(route, ROUTE_DURATIONS, at, out)
        _inherit(route, index, out)
        log = route.get("access_log")
        if isinstance(log, dict) and isinstance(log.get("path"), str):
            route["access_log"] = {**log, "path": str(_resolve(log["path"], config_dir))}
        tls = route.get("upstream_tls")
        if isinstance(tls, dict):
            route["upstream_tls"] = {
                k: str(_resolve(v, config_dir)) if k in ("ca", "cert", "key") and isinstance(v, str) else v
                for k, v in tls.items()
            }
        routes.append(route)
    return routes
