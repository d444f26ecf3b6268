"""The pure core does no I/O: checked on the source, beside the ruff rule that enforces it while editing."""

from __future__ import annotations

import ast
from pathlib import Path

import jishi.core

BANNED = {"asyncio", "time", "random", "socket", "subprocess", "os", "threading", "sqlite3", "httpx", "uvloop"}
CORE = Path(jishi.core.__file__).parent


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """Top-level names imported outside `if TYPE_CHECKING:` blocks."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_core_modules_import_no_io() -> None:
    """No module of jishi.core imports the clock, randomness, sockets, processes or the event loop."""
    offenders = []
    for path in sorted(CORE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        offenders += [f"{path.name}:{line} imports {name}" for line, name in _runtime_imports(tree) if name in BANNED]
    assert offenders == []


def test_purity_check_catches_an_io_import() -> None:
    """The checker itself flags a runtime import of time but not a TYPE_CHECKING-only import of random."""
    tree = ast.parse("import time\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import random\n")
    names = [name for _, name in _runtime_imports(tree)]
    assert "time" in names
    assert "random" not in names
