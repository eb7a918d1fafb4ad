"""How every store writes an alert's status with the times it changed, in one string:
`firing|t1|t2...` (Redis's Lua reads the same form: lib_windows.lua)."""

from __future__ import annotations

from collections.abc import Sequence

from proxy.store.base import CHANGES_KEPT

__all__ = ["join_status", "split_status"]


def split_status(raw: str) -> tuple[str, tuple[float, ...]]:
    """`firing|t1|t2` -> ("firing", (t1, t2)): an alert's status and its change times."""
    if "|" not in raw:  # most alerts never changed
        return raw, ()
    status, *changes = raw.split("|")
    return status, tuple(map(float, changes))


def join_status(status: str, changes: Sequence[float]) -> str:
    return "|".join([status, *(repr(t) for t in changes[-CHANGES_KEPT:])])
