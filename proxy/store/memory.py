"""The embedded store: everything in this process's memory, nothing to run.

Every method runs without an await inside, so each is atomic under asyncio. State is
lost when the process ends; use redis:// where that matters."""

from __future__ import annotations

import copy
import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from proxy.correlate import Group
from proxy.model import OutEvent
from proxy.store.base import Entry

__all__ = ["MemoryStore", "put_alert"]


def put_alert(g: Group, fp: str, alert: dict[str, Any], max_alerts: int, now: float) -> bool:
    """Record one alert in `g` by the scheduling rule of store.base; True if added."""
    prev = g.alerts.get(fp)
    if prev is None:
        if alert["status"] != "firing":
            return False
        if len(g.alerts) >= max_alerts:
            g.overflow += 1
            return False
        changed = True
    else:
        changed = prev["status"] != alert["status"]
        # an update may carry less (an Events v2 resolve has only its dedup_key): merge
        alert = {**prev, **{k: v for k, v in alert.items() if v not in ("", None, {}, [])}}
    g.alerts[fp] = alert
    g.version += 1
    if changed and g.triggered:
        if alert["status"] == "firing":
            g.grown = True
            wait = g.group_interval
        else:
            wait = g.resolve_wait
        g.due = min(g.due, max(now, g.last_flush_at + wait))
    return prev is None


class MemoryStore:
    url = "memory://"

    def __init__(self) -> None:
        self._groups: dict[str, Group] = {}
        self._by_fp: dict[str, set[str]] = {}
        self._due: list[tuple[float, str]] = []
        self._items: dict[int, OutEvent] = {}
        self._lines: dict[str, dict[str, deque[int]]] = {}
        self._leases: dict[int, float] = {}
        self._dead: dict[int, OutEvent] = {}
        self._seq = 0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._pauses: dict[str, float] = {}
        self._marks: dict[str, set[str]] = {}
        self._marks_of: dict[str, set[str]] = {}

    # -- windows -------------------------------------------------------------------
    def _put(self, g: Group, fp: str, alert: dict[str, Any], max_alerts: int, now: float) -> None:
        before = g.due
        if put_alert(g, fp, alert, max_alerts, now):
            self._by_fp.setdefault(fp, set()).add(g.key)
        if g.due < before:
            heapq.heappush(self._due, (g.due, g.key))

    async def record(self, entries: Sequence[Entry], orphans: Sequence[dict[str, Any]],
                     now: float, marks: Sequence[tuple[str, str]] = ()) -> None:
        for mark, fp in marks:
            self._marks.setdefault(mark, set()).add(fp)
            self._marks_of.setdefault(fp, set()).add(mark)
        for e in entries:
            g = self._groups.get(e.group_key)
            if g is None:
                if e.alert["status"] != "firing":
                    continue
                g = Group(key=e.group_key, opened_at=now, due=now + e.group_wait,
                          group_interval=e.group_interval, resolve_wait=e.resolve_wait, **e.meta)
                self._groups[g.key] = g
                heapq.heappush(self._due, (g.due, g.key))
            self._put(g, e.fingerprint, e.alert, e.max_alerts, now)
        for alert in orphans:
            for mark in self._marks_of.pop(alert["fingerprint"], ()):
                self._marks[mark].discard(alert["fingerprint"])
                if not self._marks[mark]:
                    del self._marks[mark]
            for key in list(self._by_fp.get(alert["fingerprint"], ())):
                g = self._groups[key]
                self._put(g, alert["fingerprint"], alert, len(g.alerts), now)

    async def claim_due(self, now: float, lease: float, limit: int) -> list[str]:
        out: list[str] = []
        while self._due and self._due[0][0] <= now and len(out) < limit:
            due, key = heapq.heappop(self._due)
            g = self._groups.get(key)
            if g is None or g.due != due:
                continue  # stale heap entry
            g.due = now + lease
            heapq.heappush(self._due, (g.due, key))
            out.append(key)
        return out

    async def load(self, key: str) -> Group | None:
        g = self._groups.get(key)
        return copy.deepcopy(g) if g else None

    async def commit(self, g: Group, delete: bool, events: Sequence[OutEvent]) -> bool:
        cur = self._groups.get(g.key)
        if cur is None or cur.version != g.version:
            return False
        if delete:
            del self._groups[g.key]
            for fp in g.alerts:
                keys = self._by_fp.get(fp)
                if keys:
                    keys.discard(g.key)
                    if not keys:
                        del self._by_fp[fp]
        else:
            self._groups[g.key] = g
            heapq.heappush(self._due, (g.due, g.key))
        await self.enqueue(events)
        return True

    async def marked(self, marks: Sequence[str]) -> dict[str, set[str]]:
        return {m: set(self._marks.get(m, ())) for m in marks}

    async def groups(self) -> list[Group]:
        return [copy.deepcopy(g) for g in self._groups.values()]

    async def groups_of(self, fingerprint: str) -> list[Group]:
        return [copy.deepcopy(self._groups[k]) for k in self._by_fp.get(fingerprint, ())]

    # -- outbox --------------------------------------------------------------------
    async def enqueue(self, events: Sequence[OutEvent]) -> None:
        for ev in events:
            line = self._lines.setdefault(ev.routing_key, {}).setdefault(ev.dedup_key, deque())
            if ev.action == "trigger" and line and line[-1] not in self._leases:
                last = self._items[line[-1]]
                if last.action == "trigger":
                    last.body, last.severity = ev.body, ev.severity
                    continue
            self._seq += 1
            ev = replace(ev, seq=self._seq)
            self._items[ev.seq] = ev
            line.append(ev.seq)

    async def outbox_keys(self) -> list[str]:
        return list(self._lines)

    async def take(self, routing_key: str, now: float, lease: float) -> OutEvent | None:
        best: OutEvent | None = None
        for line in self._lines.get(routing_key, {}).values():
            seq = line[0]
            if self._leases.get(seq, 0.0) > now:
                continue
            ev = self._items[seq]
            if ev.not_before > now:
                continue
            if best is None or (ev.priority, ev.seq) < (best.priority, best.seq):
                best = ev
        if best is None:
            return None
        self._leases[best.seq] = now + lease
        return replace(best)

    def _remove(self, ev: OutEvent) -> OutEvent | None:
        item = self._items.pop(ev.seq, None)
        self._leases.pop(ev.seq, None)
        lines = self._lines.get(ev.routing_key, {})
        line = lines.get(ev.dedup_key)
        if line is not None and ev.seq in line:
            line.remove(ev.seq)
            if not line:
                del lines[ev.dedup_key]
                if not lines:
                    del self._lines[ev.routing_key]
        return item

    async def done(self, ev: OutEvent, now: float) -> None:
        self._remove(ev)

    async def retry(self, ev: OutEvent, not_before: float, error: str, count: bool,
                    now: float) -> None:
        item = self._items.get(ev.seq)
        if item is None:
            return
        self._leases.pop(ev.seq, None)
        item.not_before, item.last_error = not_before, error
        item.attempts += 1 if count else 0

    async def dead(self, ev: OutEvent, error: str, now: float) -> None:
        item = self._remove(ev)
        if item is not None:
            item.last_error = error
            item.attempts += 1
            self._dead[item.seq] = item

    async def pending(self) -> list[OutEvent]:
        return [replace(e) for _, e in sorted(self._items.items())]

    async def dead_letters(self) -> list[OutEvent]:
        return [replace(e) for _, e in sorted(self._dead.items())]

    async def requeue_dead(self, seqs: Sequence[int] | None) -> int:
        chosen = [s for s in self._dead if seqs is None or s in seqs]
        await self.enqueue([replace(self._dead.pop(s), not_before=0.0, attempts=0) for s in chosen])
        return len(chosen)

    # -- budget --------------------------------------------------------------------
    async def acquire(self, routing_key: str, rate: float, burst: float, now: float) -> float:
        tokens, ts = self._buckets.get(routing_key, (burst, now))
        tokens = min(burst, tokens + max(0.0, now - ts) * rate)
        if tokens >= 1.0:
            self._buckets[routing_key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[routing_key] = (tokens, now)
        return (1.0 - tokens) / rate

    async def pause(self, routing_key: str, until: float) -> None:
        self._pauses[routing_key] = max(until, self._pauses.get(routing_key, 0.0))

    async def paused_until(self, routing_key: str) -> float:
        return self._pauses.get(routing_key, 0.0)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
