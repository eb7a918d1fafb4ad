"""proxy/pacing.py: callers that arrive together are spread one gap apart."""

from __future__ import annotations

import asyncio
import itertools
import time

from proxy.pacing import Pacer


async def test_a_pacer_gives_each_caller_the_next_turn():
    pace = Pacer(0.05)
    t0 = time.monotonic()
    starts: list[float] = []

    async def one() -> None:
        await pace.turn()
        starts.append(time.monotonic() - t0)

    await asyncio.gather(*(one() for _ in range(5)))
    assert starts[0] < 0.03 and all(b - a >= 0.045 for a, b in itertools.pairwise(starts))
