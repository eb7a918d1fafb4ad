"""A Redis store in partitions (`?partitions=N`; a Cluster's default is 16): each
partition is a whole RedisStore under its own hash tag, so every script still touches one
slot, and the tags are chosen to fall in evenly spaced slot ranges, so a Cluster's masters
each hold a share of them.

What goes where:
- a group, its alerts' index and its events: the partition of its routing key (the unit
  PagerDuty's budget is counted in: a key's outbox, budget and pause sit with its groups);
- an inhibition mark: the partition of the mark;
- a resolved alert: the partitions of its candidate groups, and every partition that holds
  its fingerprint or its marks (one pipelined EXISTS round trip finds them);
- silences, heartbeats, jobs, memos, figures and webhook ids: partition 0 (whose tag is
  the same in every layout).
`--max-groups` bounds the total: a partition may open groups up to the limit less what the
others hold, their counts read (one pipelined round trip) at most SIZES_EVERY seconds ago,
so the total can pass the limit by what the other partitions opened within that time.
Every replica claims due groups and takes events from every partition.

Outbox sequence numbers are made unique across partitions here: a partition's seq s is
shown as s * N + i (with N = 1, unchanged).

Partition 0's tag is the prefix itself, so `partitions=1` is the single-slot layout of
earlier versions, key for key. The layout is kept in `{prefix}:layout`, and the number of
the proxies running on the prefix in `{prefix}:layout:live`, a key each of them refreshes
(LIVE_EVERY) before it expires (LIVE_TTL); both are read and taken in one script
(lua/layout.lua). A proxy whose partitions differ from the data it finds, or from a proxy
that runs on the prefix, refuses to work (StoreError, a 503, naming both) until the data is
drained and those proxies stopped, or its URL says their number (README: "Redis Cluster").
A running proxy that finds the layout taken by another number (it was stopped, or paused
past LIVE_TTL, meanwhile) refuses from then on."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from proxy.errors import StoreError, StoreFull
from proxy.model import Group, OutEvent
from proxy.store import keys
from proxy.store import redis_calls as rc
from proxy.store.base import (
    ALL_ALERTS,
    Commit,
    Entry,
    Job,
    KeyStats,
    Recorded,
    Resolved,
    Stats,
    Take,
    Window,
    add_key,
)
from proxy.store.redis import RedisStore

__all__ = ["PartitionedStore", "tags"]

T = TypeVar("T")
X = TypeVar("X")
SIZES_EVERY = 1.0  # s: how old the other partitions' group counts may be (--max-groups)
LIVE_EVERY = 5.0  # s: how often a running proxy refreshes the layout's live key (claim_due)
LIVE_TTL = 30  # s: how long the live key outlives the last refresh of a proxy using it
NO_LIMIT = 1 << 50  # RedisStore's own ceiling of max_groups


def tags(prefix: str, n: int) -> list[str]:
    """The hash tags of n partitions: the prefix, then `prefix:i[.s]` with the first s
    whose slot falls in the i-th of n equal slot ranges counted from the prefix's slot."""
    slots = REDIS_CLUSTER_HASH_SLOTS
    base, width = key_slot(("{" + prefix + "}").encode()), slots // n
    out = [prefix]
    for i in range(1, n):
        lo, s = (base + i * width) % slots, 0
        while True:
            tag = f"{prefix}:{i}" + (f".{s}" if s else "")
            if (key_slot(("{" + tag + "}").encode()) - lo) % slots < width:
                out.append(tag)
                break
            s += 1
    return out


class PartitionedStore:
    def __init__(self, url: str, prefix: str = "alert-proxy") -> None:
        plain, self.count = rc.partitions_option(url)
        self.url, self.prefix = url, prefix
        first = RedisStore(plain, prefix)
        self.parts = [first, *(RedisStore(plain, t, shared=first) for t in tags(prefix, self.count)[1:])]
        self.n = first.n  # partition 0's names (silences, jobs...; tests)
        self._checked = False
        self.live_every = LIVE_EVERY
        self._live_at = 0.0  # when the live key was last refreshed (monotonic)
        self._sizes = [0] * self.count  # open groups per partition, read at _sized_at
        self._sized_at = -SIZES_EVERY

    # -- where things go ---------------------------------------------------------------------
    def _at(self, text: str) -> int:
        """The partition of a routing key (or a mark)."""
        return int(keys.rid(text)[:8], 16) % self.count if self.count > 1 else 0

    def _split(self, items: Iterable[X], key: Callable[[X], str]) -> dict[int, list[X]]:
        """`items` by the partition of their routing key (or mark), in their order."""
        by: dict[int, list[X]] = {}
        for x in items:
            by.setdefault(self._at(key(x)), []).append(x)
        return by

    def _of(self, routing_key: str) -> RedisStore:
        return self.parts[self._at(routing_key)]

    def _local(self, ev: OutEvent) -> tuple[RedisStore, OutEvent]:
        """An event's partition, and the event with that partition's seq."""
        return self._of(ev.routing_key), ev if self.count == 1 else dataclasses.replace(ev, seq=ev.seq // self.count)

    def _shown(self, i: int, ev: OutEvent) -> OutEvent:
        ev.seq = ev.seq * self.count + i
        return ev

    async def _each(self, call: Callable[[RedisStore], Awaitable[T]]) -> list[T]:
        await self._check()
        return list(await asyncio.gather(*(call(p) for p in self.parts)))

    async def _check(self, write: bool = True) -> None:
        """Refuse data laid out in another number of partitions, or a running proxy set to
        another number (once per process, then at each refresh). `write=False` (a ping:
        `doctor` changes nothing) does not record the layout."""
        if not self._checked:
            await self._verify(write)

    async def _verify(self, write: bool) -> None:
        empty = ""  # a layout found holding nothing, which this one may replace
        for _ in range(3):
            how, *found = await self._layout(write, empty)
            if how == "ok":
                break
            if how == "busy":
                raise StoreError(
                    f"redis: prefix {self.prefix!r} is in use by a proxy set to {found[0]} partition(s) "
                    f"(seen within {LIVE_TTL} s) and this proxy is set to {self.count}: add "
                    f"?partitions={found[0]} to --store, or stop those proxies first (README: Redis Cluster)")
            old = int(found[0])
            held = await self._held(old)
            if held:
                raise StoreError(
                    f"redis: prefix {self.prefix!r} holds a proxy's state in {old} partition(s) "
                    f"({held} groups, events and dead letters) and this proxy is set to {self.count}: "
                    f"add ?partitions={old} to --store, or drain it first (README: Redis Cluster)")
            if not write:
                return
            empty = found[0]
        else:
            raise StoreError(f"redis: prefix {self.prefix!r}: its layout kept changing (several proxies "
                             "set to different numbers of partitions starting at once?)")
        if write:
            self._checked, self._live_at = True, time.monotonic()

    async def _layout(self, take: bool, empty: str) -> list[str]:
        first = self.parts[0]
        out = await rc.wrapped(first._run)("layout", [f"{first.n.p}:layout", f"{first.n.p}:layout:live"],
                                           self.count, LIVE_TTL, "take" if take else "read", empty)
        return [rc.text(x) for x in out]

    async def _refresh(self) -> None:
        """Tell other proxies this one runs (every live_every seconds), and find whether the
        layout is still this one's."""
        if not self._checked or time.monotonic() - self._live_at < self.live_every:
            return
        try:
            await self._verify(True)
        except StoreError:
            self._checked = False  # (every call refuses from now on, with the reason)
            raise

    async def _held(self, count: int) -> int:
        """Groups, events and dead letters in a layout of `count` partitions."""
        async with self.parts[0]._r.pipeline(transaction=False) as pipe:
            for tag in tags(self.prefix, count):
                names = keys.Names(tag)
                pipe.hlen(names.heads)
                pipe.hlen(names.ob_items)
                pipe.hlen(names.ob_dead)
            return sum(int(x) for x in await rc.wrapped(pipe.execute)())

    # -- windows -------------------------------------------------------------------------
    async def record(self, entries: Sequence[Entry], resolved: Sequence[Resolved], now: float,
                     marks: Sequence[tuple[str, str]] = (), max_groups: int = 1 << 62) -> Recorded:
        await self._check()
        if self.count == 1:
            return await self.parts[0].record(entries, resolved, now, marks, max_groups)
        es = self._split(entries, lambda e: e.meta.routing_key)
        ms = self._split(marks, lambda m: m[0])
        rs: dict[int, list[Resolved]] = {}
        held = await self._holding([r.fingerprint for r in resolved])
        for r in resolved:
            cands = self._split(r.candidates, lambda c: c[1].routing_key)
            for i in set(cands) | held.get(r.fingerprint, set()):
                rs.setdefault(i, []).append(dataclasses.replace(r, candidates=cands.get(i, [])))
        busy = sorted(set(es) | set(ms) | set(rs))
        limits = await self._limits(max_groups, busy)
        out = await asyncio.gather(*(self.parts[i].record(es.get(i, []), rs.get(i, []), now, ms.get(i, []),
                                                          limits[i]) for i in busy),
                                   return_exceptions=True)
        for x in out:  # (the others wrote: a retry of the request records nothing twice)
            if isinstance(x, StoreFull):
                raise StoreFull(max_groups)
        for x in out:
            if isinstance(x, BaseException):
                raise x
        done = [x for x in out if isinstance(x, Recorded)]
        return Recorded(*(sum(getattr(x, f) for x in done) for f in ("lost", "fired", "resolved")))

    async def _limits(self, max_groups: int, busy: Sequence[int]) -> dict[int, int]:
        """Each busy partition's share of --max-groups: the limit less the groups the
        others hold (their due sets, as record.lua counts its own)."""
        if max_groups >= NO_LIMIT:
            return dict.fromkeys(busy, max_groups)
        t = time.monotonic()
        if t - self._sized_at >= SIZES_EVERY:
            async with self.parts[0]._r.pipeline(transaction=False) as pipe:
                for p in self.parts:
                    pipe.zcard(p.n.due_urgent)
                    pipe.zcard(p.n.due_other)
                found = [int(x) for x in await rc.wrapped(pipe.execute)()]
            self._sizes = [found[2 * i] + found[2 * i + 1] for i in range(self.count)]
            self._sized_at = t
        total = sum(self._sizes)
        return {i: max(0, max_groups - (total - self._sizes[i])) for i in busy}

    async def _holding(self, fps: Sequence[str]) -> dict[str, set[int]]:
        """The partitions holding each fingerprint in a group or a mark's sources."""
        if not fps:
            return {}
        async with self.parts[0]._r.pipeline(transaction=False) as pipe:
            for fp in fps:
                for p in self.parts:
                    pipe.exists(p.n.fingerprint(fp), p.n.marks_of(fp))
            found = await rc.wrapped(pipe.execute)()
        it = iter(found)
        return {fp: {i for i in range(self.count) if int(next(it))} for fp in fps}

    async def marked(self, marks: Sequence[str]) -> dict[str, set[str]]:
        await self._check()
        by = self._split(marks, lambda m: m)
        out: dict[str, set[str]] = {}
        for found in await asyncio.gather(*(self.parts[i].marked(ms) for i, ms in by.items())):
            out.update(found)
        return out

    async def claim_due(self, now: float, lease: float, limit: int,
                        alerts: int = ALL_ALERTS) -> list[Group]:
        """Up to `limit` groups and `alerts` alerts from each partition. (Every replica's
        flusher calls it each poll: the layout's live key is refreshed here.)"""
        await self._refresh()
        return [g for found in await self._each(lambda p: p.claim_due(now, lease, limit, alerts))
                for g in found]

    async def commit(self, commits: Sequence[Commit], durable: bool = True) -> list[bool]:
        await self._check()
        if self.count == 1:
            return await self.parts[0].commit(commits, durable)
        by: dict[int, list[int]] = {}
        stray: list[tuple[int, OutEvent]] = []  # (none today: a group's events are its key's)
        local = []
        for j, c in enumerate(commits):
            i = self._at(c.group.routing_key)
            by.setdefault(i, []).append(j)
            own = []
            for e in c.events:
                if self._at(e.routing_key) == i:
                    own.append(e)
                else:
                    stray.append((j, e))
            local.append(dataclasses.replace(c, events=own) if len(own) < len(c.events) else c)
        out = [False] * len(commits)
        results = await asyncio.gather(*(self.parts[i].commit([local[j] for j in js], durable)
                                         for i, js in by.items()))
        for js, found in zip(by.values(), results, strict=True):
            for j, ok in zip(js, found, strict=True):
                out[j] = ok
        if stray:  # after their group's commit, as they would be in it
            await self.enqueue([e for j, e in stray if out[j]])
        return out

    async def load(self, key: str) -> Group | None:
        return next((g for g in await self._each(lambda p: p.load(key)) if g is not None), None)

    async def groups(self) -> list[Group]:
        return [g for found in await self._each(lambda p: p.groups()) for g in found]

    async def heads(self) -> list[Group]:
        return [g for found in await self._each(lambda p: p.heads()) for g in found]

    async def load_many(self, keys_: Sequence[str]) -> list[Group]:
        found = {g.key: g for part in await self._each(lambda p: p.load_many(keys_)) for g in part}
        return [found[k] for k in keys_ if k in found]

    async def groups_of(self, fingerprint: str) -> list[Group]:
        found = [g for part in await self._each(lambda p: p.groups_of(fingerprint)) for g in part]
        return sorted(found, key=lambda g: g.key)

    # -- outbox ----------------------------------------------------------------------------
    async def enqueue(self, events: Sequence[OutEvent]) -> None:
        await self._check()
        by = self._split(events, lambda e: e.routing_key)
        await asyncio.gather(*(self.parts[i].enqueue(es) for i, es in by.items()))

    async def outbox_keys(self) -> list[str]:
        return [k for found in await self._each(lambda p: p.outbox_keys()) for k in found]

    async def take(self, routing_key: str, now: float, lease: float, window: Window) -> Take:
        await self._check()
        i = self._at(routing_key)
        t = await self.parts[i].take(routing_key, now, lease, window)
        if t.event is not None:
            self._shown(i, t.event)
        return t

    async def done(self, ev: OutEvent, stamp: int, now: float) -> None:
        part, ev = self._local(ev)
        await part.done(ev, stamp, now)

    async def dead(self, ev: OutEvent, stamp: int, error: str, now: float) -> None:
        part, ev = self._local(ev)
        await part.dead(ev, stamp, error, now)

    async def retry(self, ev: OutEvent, stamp: int, not_before: float, error: str, count: bool,
                    now: float) -> None:
        part, ev = self._local(ev)
        await part.retry(ev, stamp, not_before, error, count, now)

    async def release(self, ev: OutEvent, stamp: int, now: float) -> None:
        part, ev = self._local(ev)
        await part.release(ev, stamp, now)

    async def _events(self, call: Callable[[RedisStore], Awaitable[list[OutEvent]]],
                      limit: int) -> list[OutEvent]:
        found = await self._each(call)
        return sorted((self._shown(i, e) for i, es in enumerate(found) for e in es),
                      key=lambda e: e.seq)[:limit]

    async def pending(self, limit: int = 1000) -> list[OutEvent]:
        return await self._events(lambda p: p.pending(limit), limit)

    async def dead_letters(self, limit: int = 1000) -> list[OutEvent]:
        return await self._events(lambda p: p.dead_letters(limit), limit)

    async def requeue_dead(self, seqs: Sequence[int] | None) -> int:
        if seqs is None:
            return sum(await self._each(lambda p: p.requeue_dead(None)))
        by: dict[int, list[int]] = {}
        for s in seqs:
            by.setdefault(s % self.count, []).append(s // self.count)
        await self._check()
        return sum(await asyncio.gather(*(self.parts[i].requeue_dead(ss) for i, ss in by.items())))

    # -- budget ------------------------------------------------------------------------------
    async def pause(self, routing_key: str, until: float) -> None:
        await self._of(routing_key).pause(routing_key, until)

    async def sent_in_window(self, routing_key: str, now: float, window: Window) -> int:
        return await self._of(routing_key).sent_in_window(routing_key, now, window)

    async def stats(self, now: float, window: Window) -> Stats:
        every = await self._each(lambda p: p.stats(now, window))
        merged: dict[str, KeyStats] = {}
        for s in every:
            for name, k in s.keys.items():
                add_key(merged, name, k)
        dues = [s.oldest_due for s in every if s.oldest_due is not None]
        return Stats(groups_open=sum(s.groups_open for s in every), dead=sum(s.dead for s in every),
                     keys=merged, oldest_due=min(dues) if dues else None)

    async def footprint(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in await self._each(lambda p: p.footprint()):
            for k, v in part.items():
                out[k] = out.get(k, 0) + v
        return out

    # -- what lives in partition 0 ------------------------------------------------------------
    async def add_counts(self, hour: int, counts: dict[str, float]) -> None:
        await self.parts[0].add_counts(hour, counts)

    async def counts(self, since_hour: int) -> dict[int, dict[str, float]]:
        return await self.parts[0].counts(since_hour)

    async def first_time(self, key: str, now: float, ttl: float) -> bool:
        return await self.parts[0].first_time(key, now, ttl)

    async def put_silence(self, sid: str, blob: str, ends_at: float) -> None:
        await self.parts[0].put_silence(sid, blob, ends_at)

    async def silences(self) -> list[str]:
        return await self.parts[0].silences()

    async def forget_silences(self, ended_before: float) -> int:
        return await self.parts[0].forget_silences(ended_before)

    async def heartbeat(self, name: str, kind: str, now: float, limit: float) -> bool:
        return await self.parts[0].heartbeat(name, kind, now, limit)

    async def heartbeats(self) -> dict[str, tuple[float, bool]]:
        return await self.parts[0].heartbeats()

    async def add_job(self, job: Job, now: float) -> bool:
        await self._check()
        return await self.parts[0].add_job(job, now)

    async def claim_jobs(self, now: float, lease: float, limit: int) -> list[Job]:
        await self._check()
        return await self.parts[0].claim_jobs(now, lease, limit)

    async def end_job(self, job: Job, how: str, now: float, due: float = 0.0) -> None:
        await self.parts[0].end_job(job, how, now, due)

    async def dead_jobs(self, limit: int = 1000) -> list[Job]:
        return await self.parts[0].dead_jobs(limit)

    async def memo(self, key: str, value: str | None, now: float) -> str | None:
        return await self.parts[0].memo(key, value, now)

    async def ping(self) -> None:
        await self.parts[0].ping()
        await self._check(write=False)

    async def close(self) -> None:
        await self.parts[0].close()

