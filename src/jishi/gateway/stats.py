"""Request metrics of the gateway, recorded on the hot path (`Stats.record`) and read at scrape time."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jishi.gateway.exchange import Exchange

__all__ = ["Stats"]


class Stats:
    """Counters and latency histograms per route, service and instance."""

    def record(self, ex: Exchange, now: float) -> None:
        """`ex` finished at loop time `now`."""
