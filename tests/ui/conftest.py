"""Browser fixtures: Debian's Chromium driven by Playwright (headless), screenshots, the shop under `jishi up`.

Chromium comes from the distribution (`/usr/bin/chromium`; scripts/test installs it with apt-get when it is
missing and we are root). Without it the browser tests are skipped with that reason — never silently.
Screenshots of each step go to `.artifacts/screenshots/` at the repository root (ignored by git).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from jishi.testing import ProcessGroup

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from screenshots import Screenshots
from shop_harness import ShopRun

CHROMIUM = Path(os.environ.get("JISHI_CHROMIUM", "/usr/bin/chromium"))


# Module scope: Playwright's sync API runs its own event loop in this thread while it is started, so it is stopped
# at the end of each browser module — before any asyncio test elsewhere runs.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: scripts/test installs it (apt-get install chromium) when run as root; "
            "install it, or set JISHI_CHROMIUM to a chromium binary, to run the browser tests"
        )
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page (1400×1000); a JavaScript error on it fails the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the dashboard: {errors}"


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Screenshots:
    return Screenshots(request.node.name)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopRun]:
    """The shop demo under a real `jishi up` on free ports, shared by the tests of one module; checked on stop."""
    tmp = tmp_path_factory.mktemp("ui-shop")
    group = ProcessGroup(tmp / "logs")
    run = ShopRun(tmp, group)
    try:
        run.start()
        yield run
    finally:
        try:
            run.stop()
        finally:
            group.stop_all()
