"""Requests paced evenly: one every `gap` seconds at most (PagerDuty's REST API, an
action's target). Each caller is given the next free turn and sleeps until it; nothing
awaits between reading and taking the turn, so no lock is needed."""

from __future__ import annotations

import asyncio
import time

__all__ = ["Pacer"]


class Pacer:
    def __init__(self, gap: float) -> None:
        self.gap = gap
        self._next = 0.0  # monotonic time of the next free turn

    async def turn(self) -> None:
        now = time.monotonic()
        wait = self._next - now
        self._next = max(now, self._next) + self.gap
        if wait > 0:
            await asyncio.sleep(wait)
