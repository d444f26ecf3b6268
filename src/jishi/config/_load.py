"""`load_config(path)`: read, normalise, validate and cross-check a jishi.yaml into a `ProjectConfig`.

Every problem found — YAML syntax, unknown keys, wrong types or ranges, routes naming services that do not
exist, duplicate route names — is raised as a `ConfigError` (or `ConfigErrors` for several) naming the file,
the line, the field and a fix. Things that are allowed but probably wrong land in `ProjectConfig.warnings`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import ValidationError

from jishi.config._model import ProjectConfig
from jishi.config._normalize import Overrides, normalize
from jishi.config._problems import Problem, from_pydantic, raise_problems, suggest
from jishi.config._yaml import load_with_lines
from jishi.errors import ConfigError

__all__ = ["load_config", "parse_config"]


def load_config(path: str | Path, overrides: Overrides | None = None, *, python: str = sys.executable) -> ProjectConfig:
    """Load the jishi.yaml at `path`. `python` replaces `{python}` (default: this interpreter)."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", file=file, fix="pass the right path with -f, e.g. -f jishi.yaml") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read it: {exc}", file=file, fix="check the path and its permissions") from exc
    return parse_config(text, file, Path(path).resolve().parent, overrides, python=python)


def parse_config(
    text: str,
    file: str,
    config_dir: Path,
    overrides: Overrides | None = None,
    *,
    python: str = sys.executable,
) -> ProjectConfig:
    """Validate `text` as the contents of `file`, whose relative paths are resolved against `config_dir`."""
    raw, lines = load_with_lines(text, file)
    if raw is None:  # applying an empty file would delete every service and route already running
        raise ConfigError(
            "the file is empty",
            file=file,
            line=1,
            fix="declare what to run under `services:` (see examples/shop/jishi.yaml); "
            "to stop everything on purpose, write `services: {}`",
        )
    norm = normalize(raw, config_dir, overrides or Overrides(), python)
    problems = list(norm.problems)
    config: ProjectConfig | None = None
    if isinstance(raw, dict) or raw is None:
        try:
            config = ProjectConfig.model_validate({**norm.document, "source": file})
        except ValidationError as exc:
            problems.extend(from_pydantic(exc, ProjectConfig))
    if config is not None and not problems:
        problems.extend(_cross_check(config))
    raise_problems(problems, file, lines, norm.aliases)
    assert config is not None
    return config.model_copy(update={"warnings": _warnings(config)})


def _cross_check(config: ProjectConfig) -> list[Problem]:
    problems = []
    seen: dict[str, int] = {}
    for index, route in enumerate(config.routes):
        if route.name in seen:
            problems.append(
                Problem(
                    ("routes", index, "name"),
                    f"route name {route.name!r} is used twice (also by route #{seen[route.name] + 1})",
                    "give each route its own name",
                )
            )
        seen.setdefault(route.name, index)
        for b, backend in enumerate(route.backends):
            if backend.service not in config.services:
                guess = suggest(backend.service, config.services)
                fix = (
                    f"did you mean `{guess}`?"
                    if guess
                    else f"declare it under `services:`, or use one of: {', '.join(config.services) or '(none yet)'}"
                )
                problems.append(
                    Problem(("routes", index, "backends", b, "service"), f"unknown service {backend.service!r}", fix)
                )
    return problems


def _warnings(config: ProjectConfig) -> list[str]:
    out = []
    if not config.services:
        out.append(f"{config.source}: declares no services; `jishi up` will stop every instance it finds running")
    for spec in config.services.values():
        uses_port = any("{port}" in part for part in spec.command) or any("{port}" in v for v in spec.env.values())
        if spec.health_check.type != "none" and not uses_port:
            out.append(
                f"{config.source}: services.{spec.name}: has an {spec.health_check.type} health check but `{{port}}` "
                "appears in neither its command nor its env; make sure the program listens on $PORT"
            )
    return out
