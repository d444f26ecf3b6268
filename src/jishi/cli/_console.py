"""How the CLI talks to people and to the control plane: one-line errors, exit codes, one call per command.

Exit codes: 0 success; 1 the operation failed (control plane unreachable, not found, refused); 2 the
configuration or the command line is wrong. `call(url, fn)` opens an `HttpControlPlane`, runs `fn` on it, and
turns the control plane's errors into those one-line messages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import typer
from rich.console import Console

from jishi.api import HttpControlPlane
from jishi.errors import ConfigError, ControlPlaneError, ControlPlaneUnavailable, NotFoundError

__all__ = ["EXIT_CONFIG", "EXIT_FAILED", "call", "err", "fail", "out"]

T = TypeVar("T")
EXIT_FAILED = 1
EXIT_CONFIG = 2

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print `jishi: message` on stderr and exit with `code`."""
    err.print(f"[bold red]jishi:[/] {message}", markup=True)
    raise typer.Exit(code)


def config_failed(exc: ConfigError) -> NoReturn:
    err.print("[bold red]jishi: invalid configuration[/]", markup=True)
    err.print(str(exc), markup=False)
    raise typer.Exit(EXIT_CONFIG)


def call(url: str, fn: Callable[[HttpControlPlane], Awaitable[T]], *, timeout: float = 5.0) -> T:
    """Run `fn` against the control plane at `url`; errors become a one-line message and exit code 1."""

    async def run() -> T:
        async with HttpControlPlane(url, timeout=timeout) as cp:
            return await fn(cp)

    try:
        return asyncio.run(run())
    except ControlPlaneUnavailable as exc:
        fail(
            f"{exc.message}\n"
            "  Start it with `jishi up -f jishi.yaml` (or `jishi server`), or point --control-plane / "
            "JISHI_CONTROL_PLANE at a running one."
        )
    except NotFoundError as exc:
        fail(exc.message)
    except ControlPlaneError as exc:
        fail(f"the control plane refused: {exc.message} ({exc.code})")
