"""Driving a Pipeline in process with a manual clock (the unit tests' way)."""

from __future__ import annotations

import orjson

from proxy.clock import ManualClock
from proxy.pipeline import Pipeline


async def step(p: Pipeline, seconds: float) -> list[tuple[str, dict[str, object]]]:
    """Advance the clock and flush; returns the (action, body) enqueued since last time."""
    clock = p.clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds)
    await p.flush_due()
    out = []
    for ev in await p.store.pending():
        out.append((ev.action, orjson.loads(ev.body)))
        await p.store.done(ev, 0, clock.now())
    return out
