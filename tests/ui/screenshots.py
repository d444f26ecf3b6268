"""Screenshots of browser tests, saved as artifacts in .artifacts/screenshots/ (ignored by git)."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page

SCREENSHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "screenshots"


class Screenshots:
    """`shots(page, "step")` saves .artifacts/screenshots/<test>-<n>-<step>.png."""

    def __init__(self, test: str) -> None:
        self.prefix = re.sub(r"[^a-zA-Z0-9_]+", "_", test)
        self.count = 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def __call__(self, page: Page, step: str) -> Path:
        self.count += 1
        path = SCREENSHOTS / f"{self.prefix}-{self.count}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path
