"""Silences in process: update in place or replace, expiry, retention, muting."""

from __future__ import annotations

import pytest

from proxy.clock import ManualClock
from proxy.errors import InputError
from proxy.silences import RETENTION, Silences, iso
from proxy.store.memory import MemoryStore

T0 = 1_800_000_000.0


def body(t: float, hours: float = 2.0, sid: str | None = None, value: str = "X") -> dict[str, object]:
    b: dict[str, object] = {"matchers": [{"name": "alertname", "value": value, "isRegex": False}],
                            "startsAt": iso(t), "endsAt": iso(t + hours * 3600),
                            "createdBy": "me", "comment": "why"}
    if sid:
        b["id"] = sid
    return b


async def test_update_in_place_replace_expire_and_forget():
    clock = ManualClock(start=T0)
    s = Silences(MemoryStore(), clock)
    sid = await s.post(body(T0), "me")
    assert s.silenced_by({"alertname": "X"}, T0 + 1) == [sid]
    assert s.silenced_by({"alertname": "Y"}, T0 + 1) == []
    assert await s.post(body(T0, 3, sid), "me") == sid  # same matchers: updated in place
    other = await s.post(body(T0, 3, sid, value="Z"), "me")  # new matchers: a new silence
    assert other != sid and s.get(sid).state(T0) == "expired"
    await s.expire(other, "me")
    with pytest.raises(InputError, match="already expired"):
        await s.expire(other, "me")
    with pytest.raises(LookupError):
        await s.post(body(T0, sid="nope"), "me")
    clock.t = T0 + RETENTION - 60
    await s.refresh(force=True)
    assert len(s.all()) == 2  # kept for the retention
    clock.t = T0 + RETENTION + 60
    await s.refresh(force=True)
    assert s.all() == []
