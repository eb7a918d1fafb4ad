"""The embedded store: everything in this process's memory, nothing to run.

Every method runs without an await inside, so each is atomic under asyncio. State is
lost when the process ends: use sqlite:// (one machine) or redis:// where that matters.

Orders are heaps with lazy deletion: an entry is checked against the current state when
it comes to the top and dropped if stale, so every step costs O(log n) of the backlog,
never a scan. Alerts are kept as JSON text in dicts of plain `str`, which Python's
garbage collector never tracks: the cost of an alert stays flat however many are open.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from proxy.errors import StoreFull
from proxy.model import Group, GroupAlert, OutEvent
from proxy.state import GroupState
from proxy.store.base import (
    ALL_ALERTS,
    COUNT_HOURS,
    TOMBSTONE_TTL,
    Commit,
    Entry,
    KeyStats,
    Recorded,
    Resolved,
    Stats,
    Window,
    add_key,
    capped,
)
from proxy.store.codec import split_status
from proxy.store.memory_jobs import MemoryJobs
from proxy.store.memory_outbox import MemoryOutbox
from proxy.store.semantics import Beat, Put, claim_takes, heartbeat, put_alert

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Window:
    """A group as kept here: its fields (`head`, alerts left empty), and its alerts'
    status (with change times) and JSON in two dicts of plain str."""

    head: Group
    status: dict[str, str] = field(default_factory=dict)
    json: dict[str, str] = field(default_factory=dict)
    state: str = ""  # the head's state, as the blob the pipeline wrote (GroupState JSON)

    def group(self) -> Group:
        alerts = {}
        for fp, js in self.json.items():
            status, changes = split_status(self.status[fp])
            alerts[fp] = GroupAlert.from_json(js, status, changes)
        h = self.head
        return Group(key=h.key, rule=h.rule, routing_key=h.routing_key, key_name=h.key_name,
                     group_labels=dict(h.group_labels), group_interval=h.group_interval,
                     resolve_wait=h.resolve_wait, alerts=alerts, opened_at=h.opened_at, due=h.due,
                     triggered=h.triggered, grown=h.grown, last_trigger_at=h.last_trigger_at,
                     last_flush_at=h.last_flush_at, overflow=h.overflow, version=h.version,
                     last_seen=h.last_seen, urgent=h.urgent, state=GroupState.from_json(self.state),
                     n_alerts=len(alerts))




class MemoryStore(MemoryOutbox, MemoryJobs):
    url = "memory://"

    def __init__(self) -> None:
        super().__init__()
        self._init_jobs()
        self._silences: dict[str, tuple[str, float]] = {}  # id -> (blob, ends_at)
        self._beats: dict[str, Beat] = {}
        self._groups: dict[str, _Window] = {}
        self._by_fp: dict[str, str] = {}  # fingerprint -> group keys, space-separated
        # (due, group key) heaps, urgent and other: equal times in key order (as Redis's
        # sorted sets and SQLite's index order them: semantics.py, "claim order")
        self._due: tuple[list[tuple[float, str]], list[tuple[float, str]]] = ([], [])
        self._leases: deque[tuple[float, str]] = deque()  # claimed groups, by lease end
        self._tombs: dict[str, float] = {}
        self._tomb_q: deque[tuple[float, str]] = deque()
        self._marks: dict[str, set[str]] = {}
        self._marks_of: dict[str, set[str]] = {}
        self._counts: dict[int, dict[str, float]] = {}
        self._seen: dict[str, float] = {}
        self._seen_q: deque[tuple[float, str]] = deque()

    # -- windows -------------------------------------------------------------------
    def _schedule(self, g: Group, at: float) -> None:
        g.due = at
        heapq.heappush(self._due[0 if g.urgent else 1], (at, g.key))

    def _put(self, w: _Window, fp: str, status: str, js: str, full: bool, max_alerts: int,
             now: float) -> Put:
        """One alert into one window, by the scheduling rule (store/semantics.py)."""
        g = w.head
        put = put_alert(g, w.status.get(fp), status, full, max_alerts, now)
        if put.new:
            held = self._by_fp.get(fp)
            self._by_fp[fp] = f"{held} {g.key}" if held else g.key
        if put.json:
            w.json[fp] = js
        if put.status is not None:
            w.status[fp] = put.status
        if put.due is not None:
            self._schedule(g, put.due)
        return put

    def _sweep_tombs(self, now: float) -> None:
        while self._tomb_q and self._tomb_q[0][0] <= now:
            until, key = self._tomb_q.popleft()
            if self._tombs.get(key) == until:
                del self._tombs[key]

    def _tomb(self, key: str, now: float) -> None:
        until = now + TOMBSTONE_TTL
        self._tombs[key] = until
        self._tomb_q.append((until, key))

    async def record(self, entries: Sequence[Entry], resolved: Sequence[Resolved], now: float,
                     marks: Sequence[tuple[str, str]] = (), max_groups: int = 1 << 62) -> Recorded:
        if len(self._groups) + len(entries) > max_groups and len(self._groups) + len(
                {e.group_key for e in entries if e.group_key not in self._groups}) > max_groups:
            raise StoreFull(max_groups)  # (set - dict.keys() would walk every open group)
        self._sweep_tombs(now)
        lost: list[OutEvent] = []
        fired: set[str] = set()
        gone: set[str] = set()
        for mark, fp in marks:
            self._marks.setdefault(mark, set()).add(fp)
            self._marks_of.setdefault(fp, set()).add(mark)
        for e in entries:
            w = self._groups.get(e.group_key)
            if w is None:
                m = e.meta
                g = Group(key=e.group_key, rule=m.rule, routing_key=m.routing_key, key_name=m.key_name,
                          group_labels=m.group_labels, opened_at=now, group_interval=e.group_interval,
                          resolve_wait=e.resolve_wait, urgent=e.urgent)
                w = self._groups[e.group_key] = _Window(g)
                self._schedule(g, now + e.group_wait)
            elif e.urgent and not w.head.urgent:
                w.head.urgent = True
                self._schedule(w.head, w.head.due)
            if self._put(w, e.fingerprint, "firing", e.alert_json, True, e.max_alerts, now).fired:
                fired.add(e.fingerprint)
        for r in resolved:
            for mark in self._marks_of.pop(r.fingerprint, ()):
                self._marks[mark].discard(r.fingerprint)
                if not self._marks[mark]:
                    del self._marks[mark]
            held = self._by_fp.get(r.fingerprint, "").split()
            for key in held:
                if self._put(self._groups[key], r.fingerprint, "resolved", r.alert_json, r.full,
                             1 << 62, now).resolved:
                    gone.add(r.fingerprint)
            if not held:
                for key, ev in r.candidates:
                    if key not in self._groups and key not in self._tombs:
                        self._tomb(key, now)
                        lost.append(ev)
        await self.enqueue(lost)
        return Recorded(len(lost), len(fired), len(gone - fired))

    async def claim_due(self, now: float, lease: float, limit: int,
                        alerts: int = ALL_ALERTS) -> list[Group]:
        """Leases wait in a queue of their own (only the groups in flight), so the due heaps
        hold one entry per group; a lease that ends uncommitted makes its group due. Leases
        all last `lease` (the flush's), so the queue is in order of their end: dropping the
        ones that ended with their commit costs O(1) each (a heap took ~10 us apiece, and a
        wave of 8,000 looks held the loop 80 ms in one call)."""
        leases = self._leases
        while leases and leases[0][0] <= now:
            end, key = leases.popleft()
            w = self._groups.get(key)
            if w is not None and w.head.due == end:  # its flusher never committed
                self._schedule(w.head, end)
        out: list[Group] = []
        held = 0
        for heap in self._due:
            while heap and heap[0][0] <= now and len(out) < limit:
                due, key = heap[0]
                w = self._groups.get(key)
                if w is None or w.head.due != due or (heap is self._due[1]) == w.head.urgent:
                    heapq.heappop(heap)
                    continue  # a stale entry
                n = len(w.status)
                if not claim_takes(len(out), held, n, alerts):
                    return out
                heapq.heappop(heap)
                held += n
                w.head.due = now + lease
                leases.append((w.head.due, key))
                out.append(w.group())
        return out

    async def load(self, key: str) -> Group | None:
        w = self._groups.get(key)
        return w.group() if w else None

    async def commit(self, commits: Sequence[Commit], durable: bool = True) -> list[bool]:
        out = []
        for c in commits:
            g = c.group
            w = self._groups.get(g.key)
            if w is None or w.head.version != g.version:
                out.append(False)
                continue
            if c.delete:
                del self._groups[g.key]
                self._tomb(g.key, g.last_flush_at)
                for fp in w.status:
                    rest = " ".join(k for k in self._by_fp.get(fp, "").split() if k != g.key)
                    if rest:
                        self._by_fp[fp] = rest
                    else:
                        self._by_fp.pop(fp, None)
            else:
                h = w.head
                h.triggered, h.grown = g.triggered, g.grown
                h.last_trigger_at, h.last_flush_at = g.last_trigger_at, g.last_flush_at
                w.state = g.state.to_json()
                h.version += 1
                self._schedule(h, g.due)
            await self.enqueue(c.events)
            out.append(True)
        return out

    async def marked(self, marks: Sequence[str]) -> dict[str, set[str]]:
        return {m: set(self._marks.get(m, ())) for m in marks}

    async def groups(self) -> list[Group]:
        return [w.group() for w in self._groups.values()]

    async def heads(self) -> list[Group]:
        return [replace(w.head, n_alerts=len(w.status), state=GroupState.from_json(w.state))
                for w in self._groups.values()]

    async def load_many(self, keys: Sequence[str]) -> list[Group]:
        return [self._groups[k].group() for k in keys if k in self._groups]

    async def groups_of(self, fingerprint: str) -> list[Group]:
        return [self._groups[k].group() for k in self._by_fp.get(fingerprint, "").split()]

    async def stats(self, now: float, window: Window) -> Stats:
        keys: dict[str, KeyStats] = {}
        for rk, k in self._keys.items():
            sent = await self.sent_in_window(rk, now, window)
            if not k.depth and not sent:
                continue
            oldest = k.age[0][0] if k.depth and k.age else now
            add_key(keys, k.name, KeyStats(k.depth, oldest, sent))
        return Stats(groups_open=len(self._groups), dead=len(self._dead), keys=keys,
                     oldest_due=self._oldest_due())

    def _oldest_due(self) -> float | None:
        """The earliest due time, dropping stale heap tops on the way (amortized O(log n))."""
        best = None
        for heap, urgent in ((self._due[0], True), (self._due[1], False)):
            while heap:
                due, key = heap[0]
                w = self._groups.get(key)
                if w is None or w.head.due != due or w.head.urgent != urgent:
                    heapq.heappop(heap)
                    continue
                best = due if best is None else min(best, due)
                break
        return best

    async def add_counts(self, hour: int, counts: dict[str, float]) -> None:
        for old in [h for h in self._counts if h <= hour - COUNT_HOURS]:
            del self._counts[old]
        have = self._counts.setdefault(hour, {})
        for name, v in capped(have, counts).items():
            have[name] = have.get(name, 0) + v

    async def counts(self, since_hour: int) -> dict[int, dict[str, float]]:
        return {h: dict(c) for h, c in self._counts.items() if h >= since_hour}

    async def first_time(self, key: str, now: float, ttl: float) -> bool:
        while self._seen_q and self._seen_q[0][0] <= now:
            until, old = self._seen_q.popleft()
            if self._seen.get(old) == until:
                del self._seen[old]
        if key in self._seen:
            return False
        self._seen[key] = now + ttl
        self._seen_q.append((now + ttl, key))
        return True

    async def put_silence(self, sid: str, blob: str, ends_at: float) -> None:
        self._silences[sid] = (blob, ends_at)

    async def silences(self) -> list[str]:
        return [blob for blob, _ in self._silences.values()]

    async def forget_silences(self, ended_before: float) -> int:
        gone = [sid for sid, (_, end) in self._silences.items() if end < ended_before]
        for sid in gone:
            del self._silences[sid]
        return len(gone)

    async def heartbeat(self, name: str, kind: str, now: float, limit: float) -> bool:
        state, send = heartbeat(self._beats.get(name), kind, now, limit)
        if state is not None:
            self._beats[name] = state
        return send

    async def heartbeats(self) -> dict[str, tuple[float, bool]]:
        return dict(self._beats)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def footprint(self) -> dict[str, int]:
        return {"groups": len(self._groups), "fingerprints": len(self._by_fp),
                "tombstones": len(self._tombs), "events": len(self._items),
                "lines": sum(len(k.lines) for k in self._keys.values()), "dead": len(self._dead),
                "marks": len(self._marks), "seen": len(self._seen), "budgets": sum(1 for k in self._keys.values() if k.stamps)}
