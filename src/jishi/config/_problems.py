"""What is wrong with a jishi.yaml, said for people: the line, the field, the problem and a fix.

A `Problem` is found against a path in the normalised document (the loader rewrites a few things, e.g. a route's
`service: catalog` becomes `backends: [{service: catalog}]`); `Aliases` map such paths back to what the user
wrote, and `Lines` (from `jishi.config._yaml`) give the line. `from_pydantic` words each pydantic error kind as a
sentence with a fix; unknown keys get difflib's "did you mean".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from jishi.config._yaml import Lines, Path, dotted
from jishi.errors import ConfigError

__all__ = ["Aliases", "ConfigErrors", "Problem", "from_pydantic", "suggest"]

Aliases = dict[Path, Path]

# A fix for a field, by its last name, when the generic advice for the error kind is not enough.
FIELD_FIXES = {
    "instances": "set a count like `instances: 3` (0 stops every instance)",
    "command": 'give the program and its arguments, e.g. `command: "{python} app.py --port {port}"`',
    "weight": "use a whole number from 1 to 1000, e.g. `weight: 2`",
    "prefix": "start it with a slash, e.g. `prefix: /api/catalog`",
    "listen": "use HOST:PORT, e.g. `listen: 127.0.0.1:8080`",
    "type": "use one of http, tcp or none",
    "retries": "use a whole number from 0 to 10, e.g. `retries: 2`",
    "name": "use lower-case letters, digits, '-' and '_', starting and ending with a letter or digit",
    "backends": "name the service: `service: catalog`, or list `backends: [{service: catalog, weight: 1}]`",
    "workers": "use a whole number from 1 to 64, e.g. `workers: 2`",
    "rise": "use a whole number ≥ 1, e.g. `rise: 1`",
    "fall": "use a whole number ≥ 1, e.g. `fall: 2`",
    "max_head_size": "use a size of at least 1KiB, e.g. `max_head_size: 32KiB`",
    "max_body_size": "use a size, e.g. `max_body_size: 100MiB` (0: no body at all)",
    "header_timeout": "use a duration above 0, e.g. `header_timeout: 10s`",
    "body_timeout": "use a duration above 0, e.g. `body_timeout: 60s`",
    "keepalive_timeout": "use a duration above 0, e.g. `keepalive_timeout: 75s`",
    "send_timeout": "use a duration above 0, e.g. `send_timeout: 60s`",
    "request_timeout": "use a duration, e.g. `request_timeout: 5m` (0: none)",
}


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str
    fix: str | None = None

    def error(self, file: str, lines: Lines, aliases: Aliases) -> ConfigError:
        path = _unalias(self.path, aliases)
        return ConfigError(self.message, file=file, line=_line(path, lines), field=dotted(path) or None, fix=self.fix)


class ConfigErrors(ConfigError):
    """Several problems at once; `problems` holds each as its own `ConfigError`, in file order."""

    def __init__(self, problems: list[ConfigError]) -> None:
        first = problems[0]
        super().__init__(first.message, file=first.file, line=first.line, field=first.field, fix=first.fix)
        self.problems = problems
        self.message = "\n".join(p.message for p in problems)
        self.args = (self.message,)


def raise_problems(problems: Iterable[Problem], file: str, lines: Lines, aliases: Aliases) -> None:
    """Raise nothing for no problems, the `ConfigError` for one, `ConfigErrors` for several."""
    errors: list[ConfigError] = []
    for problem in problems:
        error = problem.error(file, lines, aliases)
        if not any((e.line, e.field) == (error.line, error.field) for e in errors):  # one word per field
            errors.append(error)
    errors.sort(key=lambda e: e.line or 0)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """The closest of `choices` to `word`, if any is close enough to be a likely typo."""
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _unalias(path: Path, aliases: Aliases) -> Path:
    for cut in range(len(path), 0, -1):
        if path[:cut] in aliases:
            return aliases[path[:cut]] + path[cut:]
    return path


def _line(path: Path, lines: Lines) -> int | None:
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return lines[path[:cut]]
    return None


def from_pydantic(exc: ValidationError, model: type[BaseModel], at: Path = ()) -> list[Problem]:
    """One `Problem` per pydantic error, worded for people."""
    return [_problem(err, model, at) for err in exc.errors(include_url=False)]


def _problem(err: ErrorDetails, model: type[BaseModel], at: Path) -> Problem:
    loc: Path = tuple(p for p in err["loc"] if p != "[key]")
    path = at + loc
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    field = str(loc[-1]) if loc else ""
    if kind == "extra_forbidden":
        known = _known_fields(model, loc[:-1])
        guess = suggest(field, known)
        hint = f"did you mean `{guess}`?" if guess else f"remove it; known fields here: {', '.join(sorted(known))}"
        return Problem(path, f"unknown field {field!r}", hint)
    if err["loc"] and err["loc"][-1] == "[key]":
        return Problem(path, f"{value!r} is not a valid name", FIELD_FIXES["name"])
    message, fix = _wording(kind, ctx, value, err["msg"])
    return Problem(path, message, FIELD_FIXES.get(field, fix))


def _wording(kind: str, ctx: dict[str, Any], value: Any, default: str) -> tuple[str, str | None]:
    if kind == "missing":
        return "is required", "add this field"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": "≥", "greater_than": ">", "less_than_equal": "≤", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()), "?")
        return f"must be {sign} {bound}, got {value!r}", f"use a value {sign} {bound}"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number, got {value!r}", "write a whole number without quotes, e.g. 3"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number, got {value!r}", "write a number of seconds, e.g. 1.5"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false, got {value!r}", "write true or false"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {value!r}", f"use one of {ctx.get('expected')}"
    if kind == "string_pattern_mismatch":
        return f"{value!r} does not have the required form", None
    if kind in ("too_short", "too_long"):
        return f"{'must not be empty' if kind == 'too_short' else 'is too long'}, got {value!r}", None
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping of fields, got {value!r}", "write `key: value` lines indented under it"
    if kind in ("list_type", "tuple_type"):
        return f"must be a list, got {value!r}", "write `- item` lines under it, or [a, b]"
    if kind in ("string_type", "str_type"):
        return f"must be text, got {value!r}", "quote the value"
    if kind == "value_error":
        return str(ctx.get("error", default)), None
    return default, None


def _known_fields(model: type[BaseModel], loc: Path) -> list[str]:
    """The field names a mapping at `loc` (inside `model`) accepts, following nested models and dict/list items."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _step(annotation: Any, part: str | int) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(str(part))
        return info.annotation if info is not None else None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is dict and len(args) == 2:
        return args[1]
    if origin is list and args:
        return args[0]
    for arg in args:  # Optional[...] / unions: the first model member
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return _step(arg, part)
    return None
