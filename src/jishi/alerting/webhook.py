"""Webhook notifier: each notification as a JSON POST (`jishi.alerting.notify.payload`), retried with backoff.

A try fails on a connection error, a timeout, or a 5xx / 408 / 429 answer; the next try follows after
`backoff`, then twice that, and so on, for `retries` extra tries. Any other 4xx means the receiver refuses the
body, so asking again cannot help: that fails at once. A failure raises `NotificationError` naming the URL and
what every try got.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

import httpx

from jishi.alerting.notify import payload
from jishi.core.alerts import Notification
from jishi.errors import NotificationError

__all__ = ["WebhookNotifier"]

log = logging.getLogger(__name__)
RETRYABLE = {408, 429}


class WebhookNotifier:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url, self.retries, self.backoff = url, retries, backoff
        self._sleep = sleep
        self._client = httpx.AsyncClient(timeout=timeout, headers=dict(headers or {}), transport=transport)

    async def send(self, notification: Notification) -> None:
        body = payload(notification)
        failures: list[str] = []
        for attempt in range(self.retries + 1):
            if attempt:
                await self._sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = await self._client.post(self.url, json=body)
            except httpx.HTTPError as exc:
                failures.append(f"{type(exc).__name__}: {exc}".rstrip(": "))
                log.warning("webhook %s: try %d failed: %s", self.url, attempt + 1, failures[-1])
                continue
            if response.is_success:
                return
            failures.append(f"HTTP {response.status_code}")
            if response.status_code < 500 and response.status_code not in RETRYABLE:
                break
            log.warning("webhook %s: try %d got HTTP %d", self.url, attempt + 1, response.status_code)
        raise NotificationError(
            f"webhook {self.url}: notification {notification.status!r} not delivered after "
            f"{len(failures)} tries ({'; '.join(failures)})"
        )

    async def aclose(self) -> None:
        await self._client.aclose()
