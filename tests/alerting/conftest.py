"""Fixtures: a real webhook receiver and a real SMTP server on 127.0.0.1, a Registry on a SqliteStore."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from alert_receivers import SmtpReceiver, WebhookReceiver

from jishi.registry import Registry
from jishi.store.sqlite import SqliteStore


@pytest.fixture
async def webhook() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
async def registry(tmp_path: Path) -> AsyncIterator[Registry]:
    store = await SqliteStore.open(tmp_path / "state.db")
    yield Registry(store)
    await store.close()
