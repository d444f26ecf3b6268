"""`SyncClient`: the client for code without an event loop. It runs its own loop in a thread.

    with SyncClient("http://127.0.0.1:8500", "catalog", cache_path=".jishi/catalog.json") as catalog:
        items = catalog.get("/items").json()

The thread owns an `HttpControlPlane`, a `ServiceDirectory` and a `Client` (every keyword argument of
`Client` is accepted). Each call is handed to that loop and waited for; calls from several threads are safe.
`close()` stops everything and joins the thread.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from jishi.api import HttpControlPlane
from jishi.client.client import Client
from jishi.client.directory import ServiceDirectory

__all__ = ["SyncClient"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class SyncClient:
    def __init__(
        self,
        control_plane: str,
        service: str,
        *,
        cache_path: Path | str | None = None,
        ready_timeout: float = 5.0,
        **client_kwargs: Any,
    ) -> None:
        """Connect to the control plane at `control_plane` (its base URL) and wait until instances are known."""
        self.service = service
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"jishi-client-{service}", daemon=True)
        self._thread.start()
        self._closed = False
        try:
            self.client: Client = self._submit(self._open(control_plane, cache_path, ready_timeout, client_kwargs))
        except BaseException:
            self._stop_loop()
            raise

    async def _open(
        self, url: str, cache_path: Path | str | None, ready_timeout: float, kwargs: dict[str, Any]
    ) -> Client:
        self._cp = HttpControlPlane(url)
        self.directory = await ServiceDirectory(self._cp, cache_path=cache_path).start()
        try:
            async with asyncio.timeout(ready_timeout):
                await self.directory.ready.wait()
        except TimeoutError:
            log.warning(
                "%s: no instances known %g s after start (control plane %s, no cache)", self.service, ready_timeout, url
            )
        return Client(self.directory, self.service, **kwargs)

    def _submit(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("the client is closed")
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result()

    # -- calls ---------------------------------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._submit(self.client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def broadcast(self, method: str, path: str, **kwargs: Any) -> list[httpx.Response]:
        return self._submit(self.client.broadcast(method, path, **kwargs))

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        try:
            self._submit(self._aclose())
        finally:
            self._closed = True
            self._stop_loop()

    async def _aclose(self) -> None:
        await self.client.aclose()
        await self.directory.aclose()
        await self._cp.aclose()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
