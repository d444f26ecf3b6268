"""`jishi kv get|put|del|watch`: the user's configuration key-value space (keys live under /jishi/kv/).

Values are printed as they are (plain text, tabs kept), so scripts can use them.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from jishi.api import HttpControlPlane
from jishi.cli._console import call, err, fail, out
from jishi.registry.model import KV
from jishi.store import EventType, KeyValue

__all__ = ["app"]

app = typer.Typer(help="Read, write and watch the configuration key-value store.", no_args_is_help=True)

PrefixOpt = Annotated[bool, typer.Option("--prefix", "-p", help="every key that starts with KEY")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]


def _url(ctx: typer.Context) -> str:
    return str(ctx.obj["control_plane"])


def _kv_json(kv: KeyValue) -> dict[str, object]:
    return {
        "key": kv.key.decode(),
        "value": kv.value.decode(errors="replace"),
        "mod_revision": kv.mod_revision,
        "version": kv.version,
    }


@app.command("get")
def get(ctx: typer.Context, key: str, prefix: PrefixOpt = False, as_json: JsonOpt = False) -> None:
    """Print KEY's value (or every `key<TAB>value` under KEY with --prefix)."""
    kvs = call(_url(ctx), lambda cp: cp.kv_get(key, prefix=prefix))
    if not kvs:
        fail(f"no key {key!r}" if not prefix else f"no keys under {key!r}")
    if as_json:
        out.print_json(json.dumps([_kv_json(kv) for kv in kvs]))
    elif prefix:
        for kv in kvs:
            typer.echo(f"{kv.key.decode()}\t{kv.value.decode(errors='replace')}")
    else:
        typer.echo(kvs[0].value.decode(errors="replace"))


@app.command("put")
def put(ctx: typer.Context, key: str, value: str) -> None:
    """Set KEY to VALUE."""
    if not key:
        fail("the key must not be empty", 2)
    revision = call(_url(ctx), lambda cp: cp.kv_put(key, value))
    out.print(f"OK (revision {revision})")


@app.command("del")
def delete(ctx: typer.Context, key: str, prefix: PrefixOpt = False) -> None:
    """Delete KEY (or every key under KEY with --prefix)."""
    deleted = call(_url(ctx), lambda cp: cp.kv_delete(key, prefix=prefix))
    if not deleted:
        fail(f"no key {key!r}" if not prefix else f"no keys under {key!r}")
    out.print(f"deleted {deleted} key{'s' if deleted != 1 else ''}")


@app.command("watch")
def watch(ctx: typer.Context, key: str, prefix: PrefixOpt = False, as_json: JsonOpt = False) -> None:
    """Print every change to KEY (or under KEY with --prefix) as it happens, until Ctrl-C."""
    full = KV + key

    async def follow(cp: HttpControlPlane) -> None:
        revision, _ = await cp.snapshot(full)
        what = f"keys under {key!r}" if prefix else f"key {key!r}"
        err.print(f"watching {what} from revision {revision + 1} (Ctrl-C stops)", style="dim")
        async for event in cp.watch(full, revision + 1):
            name = event.kv.key.decode()[len(KV) :]
            if not prefix and name != key:
                continue
            value = event.kv.value.decode(errors="replace")
            if as_json:
                doc = {"type": event.type.value, "key": name, "value": value, "revision": event.kv.mod_revision}
                typer.echo(json.dumps(doc))
            elif event.type is EventType.PUT:
                typer.echo(f"PUT {name} {value}")
            else:
                typer.echo(f"DELETE {name}")

    try:
        call(_url(ctx), follow)
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise typer.Exit(0) from None
