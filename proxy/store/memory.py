"""The embedded store: everything in this process's memory, nothing to run.

Every method runs without an await inside, so each is atomic under asyncio. State is
lost when the process ends; use redis:// where that matters."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from proxy.model import Group, GroupAlert, OutEvent
from proxy.store.base import Entry, Resolved, Stats

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Window:
    """A group as kept here: its fields (`head`, alerts left empty), and its alerts'
    status and JSON in two dicts of plain str, which the garbage collector never
    tracks: the cost of an alert stays flat however many are open."""

    head: Group
    status: dict[str, str] = field(default_factory=dict)
    json: dict[str, str] = field(default_factory=dict)

    def group(self) -> Group:
        alerts = {fp: GroupAlert.from_json(js, self.status[fp]) for fp, js in self.json.items()}
        return replace(self.head, alerts=alerts, group_labels=dict(self.head.group_labels))


class MemoryStore:
    url = "memory://"

    def __init__(self) -> None:
        self._groups: dict[str, _Window] = {}
        self._by_fp: dict[str, str] = {}  # fingerprint -> group keys, space-separated
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
    def _put(self, w: _Window, fp: str, status: str, js: str, full: bool, max_alerts: int,
             now: float) -> None:
        """One alert into one window, by the scheduling rule of store.base."""
        g = w.head
        prev = w.status.get(fp)
        if prev is None:
            if status != "firing":
                return
            if len(w.status) >= max_alerts:
                g.overflow += 1
                return
            held = self._by_fp.get(fp)
            self._by_fp[fp] = f"{held} {g.key}" if held else g.key
        if full or prev is None:
            w.json[fp] = js
        w.status[fp] = status
        if prev == status:
            return
        g.version += 1
        if g.triggered:
            if status == "firing":
                g.grown = True
            at = max(now, g.last_flush_at + (g.group_interval if status == "firing" else g.resolve_wait))
            if at < g.due:
                g.due = at
                heapq.heappush(self._due, (at, g.key))

    async def record(self, entries: Sequence[Entry], orphans: Sequence[Resolved],
                     now: float, marks: Sequence[tuple[str, str]] = ()) -> None:
        for mark, fp in marks:
            self._marks.setdefault(mark, set()).add(fp)
            self._marks_of.setdefault(fp, set()).add(mark)
        for e in entries:
            w = self._groups.get(e.group_key)
            if w is None:
                if e.status != "firing":
                    continue
                w = _Window(Group(key=e.group_key, opened_at=now, due=now + e.group_wait,
                                  group_interval=e.group_interval, resolve_wait=e.resolve_wait,
                                  **e.meta))
                self._groups[e.group_key] = w
                heapq.heappush(self._due, (w.head.due, e.group_key))
            self._put(w, e.fingerprint, e.status, e.alert_json, True, e.max_alerts, now)
        for o in orphans:
            for mark in self._marks_of.pop(o.fingerprint, ()):
                self._marks[mark].discard(o.fingerprint)
                if not self._marks[mark]:
                    del self._marks[mark]
            for key in self._by_fp.get(o.fingerprint, "").split():
                self._put(self._groups[key], o.fingerprint, "resolved", o.alert_json, o.full,
                          1 << 62, now)

    async def claim_due(self, now: float, lease: float, limit: int) -> list[str]:
        out: list[str] = []
        while self._due and self._due[0][0] <= now and len(out) < limit:
            due, key = heapq.heappop(self._due)
            w = self._groups.get(key)
            if w is None or w.head.due != due:
                continue  # stale heap entry
            w.head.due = now + lease
            heapq.heappush(self._due, (w.head.due, key))
            out.append(key)
        return out

    async def load(self, key: str) -> Group | None:
        w = self._groups.get(key)
        return w.group() if w else None

    async def commit(self, g: Group, delete: bool, events: Sequence[OutEvent]) -> bool:
        w = self._groups.get(g.key)
        if w is None or w.head.version != g.version:
            return False
        if delete:
            del self._groups[g.key]
            for fp in w.status:
                rest = " ".join(k for k in self._by_fp.get(fp, "").split() if k != g.key)
                if rest:
                    self._by_fp[fp] = rest
                else:
                    self._by_fp.pop(fp, None)
        else:
            h = w.head
            h.due, h.triggered, h.grown = g.due, g.triggered, g.grown
            h.last_trigger_at, h.last_flush_at = g.last_trigger_at, g.last_flush_at
            heapq.heappush(self._due, (h.due, h.key))
        await self.enqueue(events)
        return True

    async def marked(self, marks: Sequence[str]) -> dict[str, set[str]]:
        return {m: set(self._marks.get(m, ())) for m in marks}

    async def groups(self) -> list[Group]:
        return [w.group() for w in self._groups.values()]

    async def groups_of(self, fingerprint: str) -> list[Group]:
        return [self._groups[k].group() for k in self._by_fp.get(fingerprint, "").split()]

    async def stats(self) -> Stats:
        return Stats(groups_open=len(self._groups), dead=len(self._dead),
                     pending=[(e.key_name, e.enqueued_at) for e in self._items.values()])

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
