"""The store's rules, written once: pure functions (data and a time in, data out) that
the memory and SQLite stores both call. Redis runs them as Lua (lua/lib_windows.lua,
lib_outbox.lua, take.lua, claim_due.lua), its one other copy, held to this one by
tests/contract/test_differential.py: random sequences of record, claim, commit, enqueue,
take, done, retry, release and dead against memory, SQLite and a real Redis, comparing
what each answers at every step.

    put_alert     the scheduling rule (store.base): one alert into one group
    claimable     a group may be claimed: due, and not under another flusher's lease
                  (claim order: urgent groups first, then by due time, equal times by key)
    claim_takes   a claim takes the next group unless its alerts would pass the bound
    coalesces     a new trigger replaces the pending trigger last in its line
    budget_wait   the per-key window: how long before an event of this priority may go
    ready         a line's head goes now, or waits for its not_before
    heartbeat     a dead man's switch: arrivals, and when it pages or resolves (once)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from proxy.model import SEEN_STEP, URGENT
from proxy.store.base import Window
from proxy.store.codec import join_status, split_status

__all__ = ["Beat", "Head", "Put", "budget_wait", "claim_takes", "claimable", "coalesces", "heartbeat",
           "put_alert", "ready"]


class Head(Protocol):
    """The fields of a group the scheduling rule reads and changes."""

    due: float
    triggered: bool
    grown: bool
    overflow: int
    version: int
    last_seen: float
    n_alerts: int
    last_flush_at: float
    group_interval: float
    resolve_wait: float


@dataclass(frozen=True, slots=True)
class Put:
    """What recording one alert into one group changes besides the head."""

    status: str | None  # the alert's status (with its change times) to store; None: as it is
    json: bool  # its JSON is (re)written
    new: bool  # a new alert of the group
    due: float | None  # the group's new due time, when it moved earlier
    fired: bool = False  # it started firing (new, or after a resolve)
    resolved: bool = False  # it stopped firing


_NOTHING = Put(None, False, False, None)


def put_alert(h: Head, prev: str | None, status: str, full: bool, max_alerts: int,
              now: float) -> Put:
    """One alert into one group, by the scheduling rule of store.base: `prev` is its stored
    status (None: not in the group); `full`: the update carries its whole JSON (an Events
    v2 resolve changes the status alone). Changes `h` in place; last_seen moves in steps of
    SEEN_STEP (model.py)."""
    if now - h.last_seen >= SEEN_STEP:
        h.last_seen = now
    if prev is None:
        if status != "firing":
            return _NOTHING  # a resolve for an alert the group never held
        if h.n_alerts >= max_alerts:
            h.overflow += 1
            return _NOTHING
        h.n_alerts += 1
        stored, new = status, True
    else:
        was, changes = split_status(prev)
        if was == status:
            return Put(None, full, False, None)  # a repeat: its JSON may be newer
        stored, new = join_status(status, (*changes, now)), False
    h.version += 1
    due = None
    if h.last_flush_at > 0:  # flushed before: due again after group_interval (resolve_wait)
        if status == "firing" and h.triggered:
            h.grown = True
        wait = h.group_interval if status == "firing" else h.resolve_wait
        at = max(now, h.last_flush_at + wait)
        if at < h.due:
            h.due = due = at
    return Put(stored, new or full, new, due, status == "firing", status != "firing")


def claimable(due: float, lease_end: float, now: float) -> bool:
    """A group may be claimed now: it is due, and no flusher's lease on it runs."""
    return due <= now and lease_end <= now


def claim_takes(taken: int, held: int, n_alerts: int, alerts: int) -> bool:
    """A claim that has `taken` groups holding `held` alerts takes the next claimable one,
    of `n_alerts`, unless that would take it past `alerts`: then the claim ends there (the
    first group is always taken). Large groups are claimed a few at a time, so that one
    claim's load stays short."""
    return taken == 0 or held + n_alerts <= alerts


def coalesces(action: str, last_action: str | None, last_lease_end: float, now: float) -> bool:
    """A trigger replaces the pending trigger last in its dedup_key's line (PagerDuty keeps
    only the newest anyway), unless that one is being sent (leased)."""
    return action == "trigger" and last_action == "trigger" and last_lease_end <= now


def budget_wait(n: int, nth_oldest: Callable[[int], float], prio: int, now: float,
                window: Window) -> float:
    """0 if the window has room for an event of priority `prio`, else the seconds until it
    has. `n`: send times in the window (older ones already forgotten); `nth_oldest(i)`: the
    i-th oldest of them (0-based). A critical trigger may use the whole window; the others
    leave `reserve` places for it."""
    allowed = window.limit if prio == URGENT else window.limit - window.reserve
    if n < allowed:
        return 0.0
    return max(0.001, nth_oldest(n - allowed) + window.seconds - now)


def ready(not_before: float, now: float) -> bool:
    """A line's head may be taken now (else it waits in the waiting order until then)."""
    return not_before <= now


Beat = tuple[float, bool]  # a heartbeat's state: its last arrival (or first check), paged


def heartbeat(state: Beat | None, kind: str, now: float, limit: float) -> tuple[Beat | None, bool]:
    """A heartbeat's next state, and whether to send now (one caller only: stores apply it
    atomically). `seen`: one arrived (send: its resolve, if it had paged); `check`: has
    none arrived for `limit` seconds (send: its trigger, once)? A heartbeat never seen is
    counted from its first check."""
    if kind == "seen":
        return (now, False), state is not None and state[1]
    if state is None:
        return (now, False), False
    last, paged = state
    if not paged and last + limit <= now:
        return (last, True), True
    return state, False

