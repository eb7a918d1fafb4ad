"""The memory store's outbox: per routing key, lines of events per dedup_key, heaps of
their heads (ready by priority, waiting by time), leases, the budget window's stamps and
pauses, and the dead letters. Every method runs without an await inside (atomic under
asyncio); the rules are store/semantics.py's."""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from proxy.model import OutEvent
from proxy.store.base import Take, Window
from proxy.store.semantics import budget_wait, coalesces

__all__ = ["MemoryOutbox"]


@dataclass(slots=True)
class Key:
    """One routing key's outbox: lines per dedup_key, heaps of their heads, its budget."""

    lines: dict[str, tuple[int, ...]] = field(default_factory=dict)  # tuples: the GC skips them
    ready: list[tuple[int, int, str]] = field(default_factory=list)  # (priority, seq, dk)
    waiting: list[tuple[float, int, str]] = field(default_factory=list)  # (time, seq, dk)
    leased: dict[int, float] = field(default_factory=dict)  # seq -> lease end
    age: deque[tuple[float, int]] = field(default_factory=deque)  # (enqueued_at, seq), in order
    depth: int = 0
    stamps: dict[int, float] = field(default_factory=dict)  # budget: stamp -> send time
    paused_until: float = 0.0
    name: str = ""


class MemoryOutbox:
    def __init__(self) -> None:
        self._items: dict[int, OutEvent] = {}
        self._keys: dict[str, Key] = {}
        self._dead: dict[int, OutEvent] = {}
        self._seq = 0
        self._stamp = 0

    # -- outbox --------------------------------------------------------------------
    def _key(self, rk: str) -> Key:
        k = self._keys.get(rk)
        if k is None:
            k = self._keys[rk] = Key()
        return k

    def _head_ready(self, k: Key, seq: int, dk: str) -> None:
        """`seq` heads its line and is not leased: into `ready`, or `waiting` for its time."""
        ev = self._items[seq]
        if ev.not_before > 0:
            heapq.heappush(k.waiting, (ev.not_before, seq, dk))
        else:
            heapq.heappush(k.ready, (ev.priority, seq, dk))

    async def enqueue(self, events: Sequence[OutEvent]) -> None:
        for ev in events:
            k = self._key(ev.routing_key)
            k.name = ev.key_name
            line = k.lines.get(ev.dedup_key, ())
            last = self._items[line[-1]] if line else None
            if last is not None and coalesces(ev.action, last.action, k.leased.get(last.seq, 0.0),
                                              ev.enqueued_at):
                last.body, last.severity = ev.body, ev.severity
                if len(line) == 1:
                    self._head_ready(k, line[0], ev.dedup_key)  # its priority may change
                continue
            self._seq += 1
            ev.seq = self._seq  # the store keeps this event object from now on
            self._items[ev.seq] = ev
            line = k.lines[ev.dedup_key] = (*line, ev.seq)
            k.depth += 1
            k.age.append((ev.enqueued_at, ev.seq))
            if len(line) == 1:
                self._head_ready(k, ev.seq, ev.dedup_key)

    async def outbox_keys(self) -> list[str]:
        return [rk for rk, k in self._keys.items() if k.depth]

    def _is_head(self, k: Key, seq: int, dk: str) -> bool:
        line = k.lines.get(dk)
        return bool(line) and line[0] == seq  # type: ignore[index]

    def _budget_wait(self, k: Key, prio: int, now: float, window: Window) -> float:
        """0 if the window has room for an event of this priority, else the seconds until
        it has (stamps older than the window are forgotten first)."""
        horizon = now - window.seconds
        for s in [s for s, t in k.stamps.items() if t <= horizon]:
            del k.stamps[s]
        return budget_wait(len(k.stamps), lambda i: sorted(k.stamps.values())[i], prio, now, window)

    async def take(self, routing_key: str, now: float, lease: float, window: Window) -> Take:
        k = self._keys.get(routing_key)
        if k is None or not k.depth:
            return Take(None, math.inf)
        if k.paused_until > now:
            return Take(None, k.paused_until - now)
        while k.waiting and k.waiting[0][0] <= now:  # backoffs over, leases run out
            _, seq, dk = heapq.heappop(k.waiting)
            if self._is_head(k, seq, dk) and k.leased.get(seq, 0.0) <= now:
                k.leased.pop(seq, None)
                heapq.heappush(k.ready, (self._items[seq].priority, seq, dk))
        while k.ready:
            prio, seq, dk = k.ready[0]
            ev = self._items.get(seq)
            if ev is None or ev.priority != prio or seq in k.leased or not self._is_head(k, seq, dk):
                heapq.heappop(k.ready)
                continue
            if ev.not_before > now:
                heapq.heappop(k.ready)
                heapq.heappush(k.waiting, (ev.not_before, seq, dk))
                continue
            wait = self._budget_wait(k, prio, now, window)
            if wait:
                return Take(None, wait)
            heapq.heappop(k.ready)
            k.leased[seq] = now + lease
            heapq.heappush(k.waiting, (now + lease, seq, dk))
            self._stamp += 1
            k.stamps[self._stamp] = now
            return Take(replace(ev), 0.0, self._stamp)
        while k.waiting:  # how long until the first head that really waits (stale entries go)
            t, seq, dk = k.waiting[0]
            ev = self._items.get(seq)
            if ev is not None and self._is_head(k, seq, dk) and \
                    k.leased.get(seq, ev.not_before if seq not in k.leased else -1.0) == t:
                return Take(None, max(0.001, t - now))
            heapq.heappop(k.waiting)
        return Take(None, math.inf)

    def _settle(self, k: Key, stamp: int, now: float) -> None:
        if stamp in k.stamps:
            k.stamps[stamp] = max(k.stamps[stamp], now)

    def _remove(self, ev: OutEvent) -> OutEvent | None:
        """Take the event off its line; the next of the line becomes a head."""
        item = self._items.pop(ev.seq, None)
        k = self._keys.get(ev.routing_key)
        if item is None or k is None:
            return item
        k.leased.pop(ev.seq, None)
        k.depth -= 1
        line = k.lines.get(ev.dedup_key)
        if line is not None and ev.seq in line:
            line = tuple(s for s in line if s != ev.seq)
            if line:
                k.lines[ev.dedup_key] = line
                self._head_ready(k, line[0], ev.dedup_key)
            else:
                del k.lines[ev.dedup_key]
        while k.age and k.age[0][1] not in self._items:
            k.age.popleft()
        return item

    async def done(self, ev: OutEvent, stamp: int, now: float) -> None:
        self._remove(ev)
        if k := self._keys.get(ev.routing_key):
            self._settle(k, stamp, now)

    async def retry(self, ev: OutEvent, stamp: int, not_before: float, error: str, count: bool,
                    now: float) -> None:
        item = self._items.get(ev.seq)
        k = self._keys.get(ev.routing_key)
        if k is not None:  # the send happened, whatever became of its event since
            self._settle(k, stamp, now)
        if item is None or k is None:
            return
        k.leased.pop(ev.seq, None)
        item.not_before, item.last_error = not_before, error
        item.attempts += 1 if count else 0
        if self._is_head(k, ev.seq, ev.dedup_key):
            self._head_ready(k, ev.seq, ev.dedup_key)

    async def release(self, ev: OutEvent, stamp: int, now: float) -> None:
        k = self._keys.get(ev.routing_key)
        if k is not None:  # it was not sent, whatever became of its event since
            k.stamps.pop(stamp, None)
        if k is None or ev.seq not in self._items:
            return
        k.leased.pop(ev.seq, None)
        if self._is_head(k, ev.seq, ev.dedup_key):
            self._head_ready(k, ev.seq, ev.dedup_key)

    async def dead(self, ev: OutEvent, stamp: int, error: str, now: float) -> None:
        item = self._remove(ev)
        if k := self._keys.get(ev.routing_key):
            self._settle(k, stamp, now)
        if item is not None:
            item.last_error = error
            item.attempts += 1
            self._dead[item.seq] = item

    async def pending(self, limit: int = 1000) -> list[OutEvent]:
        out = []
        for seq in sorted(self._items)[:limit]:
            out.append(replace(self._items[seq]))
        return out

    async def dead_letters(self, limit: int = 1000) -> list[OutEvent]:
        return [replace(e) for _, e in sorted(self._dead.items())[:limit]]

    async def requeue_dead(self, seqs: Sequence[int] | None) -> int:
        chosen = [s for s in self._dead if seqs is None or s in seqs]
        await self.enqueue([replace(self._dead.pop(s), not_before=0.0, attempts=0, last_error="")
                            for s in chosen])
        return len(chosen)

    # -- budget --------------------------------------------------------------------
    async def pause(self, routing_key: str, until: float) -> None:
        k = self._key(routing_key)
        k.paused_until = max(until, k.paused_until)

    async def sent_in_window(self, routing_key: str, now: float, window: Window) -> int:
        k = self._keys.get(routing_key)
        return sum(1 for t in k.stamps.values() if t > now - window.seconds) if k else 0

