"""The Redis store: windows, outbox and budgets shared by every replica on one Redis
(standalone, over TLS, behind Sentinel, or a Cluster: see redis_url.py).

Each atomic step is one Lua script in lua/ (loaded with importlib.resources, run by
EVALSHA, reloaded by redis-py when a restarted Redis has forgotten it), and every key a
script touches is passed in KEYS, named by keys.py, so Redis Cluster runs them as they
are. Recording a request's alerts is one round trip whatever their number (two when a
resolved alert sits in a group today's rules would not put it in). Driver errors become
StoreError, which the HTTP layer answers with 503."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from proxy.errors import StoreError, StoreFull
from proxy.model import SEEN_STEP, Group, OutEvent
from proxy.state import GroupState
from proxy.store import keys
from proxy.store import redis_calls as rc
from proxy.store.base import (
    ALL_ALERTS,
    CHANGES_KEPT,
    COUNT_FIELDS,
    COUNT_HOURS,
    TOMBSTONE_TTL,
    Commit,
    Entry,
    KeyStats,
    Recorded,
    Resolved,
    Stats,
    Take,
    Window,
    add_key,
)
from proxy.store.redis_oncall import OnCall
from proxy.store.redis_url import connect

__all__ = ["RedisStore"]

OPEN_KNOWN = 65536  # groups a proxy remembers it saw open (RedisStore._open)


class RedisStore(OnCall):
    """`wait_replicas=N` in the URL: a write that a 2xx answer depends on (recording
    alerts, enqueueing events) counts only once N replicas have it (Redis WAIT, in the same
    round trip); else the answer is 503 and the sender retries. Behind Sentinel, with
    N = 1, a failover loses nothing that was answered 2xx."""

    def __init__(self, url: str, prefix: str = "alert-proxy", *,
                 shared: RedisStore | None = None) -> None:
        """`prefix`: the hash tag of every key (a partition's tag: redis_parts.py).
        `shared`: a store on the same Redis whose client and scripts this one uses."""
        self.url = url
        self.n = keys.Names(prefix)
        # Groups this proxy saw open: a record sends what opens a group (its meta) only for
        # the others; if one closed since, the script asks for it (one set for the
        # partitions, bounded: emptied when full)
        self._open: set[str] = shared._open if shared is not None else set()
        self._s: dict[str, Any]
        self._replicas: int
        self._wait_ms: int
        if shared is not None:
            self._r, self._s = shared._r, shared._s
            self._replicas, self._wait_ms = shared._replicas, shared._wait_ms
            return
        plain, self._replicas, self._wait_ms = rc.wait_option(url)
        self._r = connect(plain)
        self._s = {name: self._r.register_script(rc.lua(name)) for name in rc.LIBS}

    async def _run(self, name: str, keys_: Sequence[str], *args: Any, durable: bool = False) -> Any:
        if not (durable and self._replicas):
            return await self._s[name](keys=list(keys_), args=list(args))
        async with self._r.pipeline(transaction=False) as pipe:
            await self._s[name](keys=list(keys_), args=list(args), client=pipe)
            pipe.execute_command("WAIT", self._replicas, self._wait_ms)
            out, acked = await pipe.execute()
        if int(acked) < self._replicas:
            raise StoreError(f"redis: the write reached {acked} of {self._replicas} replica(s) "
                             f"in {self._wait_ms} ms")
        return out

    def _outbox_fixed(self) -> list[str]:
        n = self.n
        return [n.ob_items, n.ob_seq, n.ob_keys, n.ob_names]

    # -- windows -------------------------------------------------------------------
    @rc.wrapped
    async def record(self, entries: Sequence[Entry], resolved: Sequence[Resolved], now: float,
                     marks: Sequence[tuple[str, str]] = (), max_groups: int = 1 << 62) -> Recorded:
        if not entries and not resolved and not marks:
            return Recorded()
        n = self.n
        kl = rc.Keys([n.due_urgent, n.due_other, *self._outbox_fixed(), n.heads, n.sizes])
        groups: dict[str, list[Any]] = {}  # key -> [i_g, i_ga, i_gs, i_tomb (0: unused), meta]
        opening: dict[str, Entry] = {}  # the groups' first entries

        def group(k: str, tomb: bool = False) -> list[Any]:
            found = groups.get(k)
            if found is None:
                g, ga, gs, tb = n.group(k)
                found = groups[k] = [kl.idx(g), kl.idx(ga), kl.idx(gs), kl.idx(tb) if tomb else 0, False]
            elif tomb and not found[3]:
                found[3] = kl.idx(n.group(k)[3])
            return found

        def meta(k: str) -> None:
            e, m = opening[k], opening[k].meta
            group(k)[4] = [m.rule, m.routing_key, m.key_name, orjson.dumps(m.group_labels).decode(),
                           e.group_wait, e.group_interval, e.resolve_wait,
                           rc.head(m.rule, m.key_name, m.group_labels, now, False, GroupState())]

        mk: dict[str, int] = {}
        es = []
        for e in entries:
            k = e.group_key
            if k not in opening:
                opening[k] = e
                group(k)
                if k not in self._open:
                    meta(k)
            es.append([k, e.fingerprint, kl.idx(n.fingerprint(e.fingerprint)),
                       e.alert_json, e.max_alerts, e.urgent])
        rs = []
        for r in resolved:
            cands = []
            for ck, ev in r.candidates:
                group(ck, tomb=True)
                cands.append([ck, rc.event_json(ev), kl.outbox(n, ev.routing_key)])
            rs.append([r.fingerprint, kl.idx(n.fingerprint(r.fingerprint)),
                       kl.idx(n.marks_of(r.fingerprint)), r.alert_json, r.full, cands])
        ms = []
        for mark, fp in marks:
            mk[mark] = kl.idx(n.mark(mark))
            ms.append([mk[mark], kl.idx(n.marks_of(fp)), mark, fp])
        for _ in range(5):
            req = {"now": now, "ttl": rc.GROUP_TTL, "tomb": int(TOMBSTONE_TTL), "kept": CHANGES_KEPT,
                   "step": SEEN_STEP, "max": min(max_groups, 1 << 50), "g": groups, "e": es, "r": rs, "m": ms, "mk": mk}
            out = await self._run("record", kl.keys, orjson.dumps(req), durable=True)
            if isinstance(out, list):
                if len(self._open) + len(opening) > OPEN_KNOWN:
                    self._open.clear()
                self._open.update(opening)
                return Recorded(*(int(x) for x in out))
            answer = orjson.loads(out)
            if "full" in answer:
                raise StoreFull(max_groups)
            # groups or marks only the script knew; groups it would open whose meta was left out
            missing = answer["missing"]
            for k in missing.get("groups") or []:
                group(k)
            for k in missing.get("meta") or []:
                self._open.discard(k)
                meta(k)
            for m in missing.get("marks") or []:
                mk[m] = kl.idx(n.mark(m))
        raise StoreError("redis: record: the groups of a resolved alert kept changing")

    @rc.wrapped
    async def marked(self, marks: Sequence[str]) -> dict[str, set[str]]:
        async with self._r.pipeline(transaction=False) as pipe:
            for m in marks:
                pipe.smembers(self.n.mark(m))
            raw = await pipe.execute()
        return {m: {rc.text(fp) for fp in fps} for m, fps in zip(marks, raw, strict=True)}

    @rc.wrapped
    async def claim_due(self, now: float, lease: float, limit: int,
                        alerts: int = ALL_ALERTS) -> list[Group]:
        n = self.n
        ks = [rc.text(k) for k in await self._run("claim_due", [n.due_urgent, n.due_other, n.sizes],
                                                  now, lease, limit, alerts)]
        groups = await self._load(ks)
        gone = set(ks) - {g.key for g in groups}
        if gone:  # expired by their TTL
            async with self._r.pipeline(transaction=False) as pipe:
                pipe.zrem(n.due_urgent, *gone)
                pipe.zrem(n.due_other, *gone)
                pipe.hdel(n.heads, *gone)
                pipe.hdel(n.sizes, *gone)
                await pipe.execute()
        for g in groups:
            g.due = now + lease
        return groups

    async def _load(self, group_keys: Sequence[str]) -> list[Group]:
        if not group_keys:
            return []
        keys = [k for gk in group_keys for k in self.n.group(gk)[:3]]
        raw = await self._run("load", keys, *rc.FIELDS)
        return [rc.group(k, *found) for k, found in zip(group_keys, raw, strict=True) if found]

    @rc.wrapped
    async def load(self, key: str) -> Group | None:
        [*found] = await self._load([key])
        if not found:
            return None
        g = found[0]
        score = await self._r.zscore(self.n.due_urgent if g.urgent else self.n.due_other, key)
        g.due = float(score) if score is not None else 0.0
        return g

    @rc.wrapped
    async def commit(self, commits: Sequence[Commit], durable: bool = True) -> list[bool]:
        if not commits:
            return []
        n = self.n
        kl = rc.Keys([n.due_urgent, n.due_other, *self._outbox_fixed(), n.heads, n.sizes])
        cs = []
        strs: list[bytes] = []
        for c in commits:
            g = c.group
            fps = [kl.idx(n.fingerprint(fp)) for fp in g.alerts] if c.delete else []
            head = rc.head(g.rule, g.key_name, g.group_labels, g.opened_at, g.triggered, g.state)
            cs.append([*kl.many(n.group(g.key)), g.key, g.version, c.delete, repr(g.due),
                       "1" if g.triggered else "0", "1" if g.grown else "0", repr(g.last_trigger_at),
                       repr(g.last_flush_at), rc.arg(strs, g.state.to_json().encode()),
                       rc.arg(strs, head.encode()), fps, rc.events(c.events, kl, n, strs)])
        req = {"now": max(c.group.last_flush_at for c in commits), "ttl": rc.GROUP_TTL,
               "tomb": int(TOMBSTONE_TTL), "c": cs}
        out = await self._run("commit", kl.keys, orjson.dumps(req), *strs)
        for c, done in zip(commits, out, strict=True):
            if c.delete and done:
                self._open.discard(c.group.key)  # (its next alert sends the meta at once)
        return [bool(x) for x in out]

    @rc.wrapped
    async def groups(self) -> list[Group]:
        n = self.n
        ks = [rc.text(k) for z in (n.due_urgent, n.due_other) for k in await self._r.zrange(z, 0, -1)]
        return await self._load(ks)

    @rc.wrapped
    async def heads(self) -> list[Group]:
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.n.heads)
            pipe.hgetall(self.n.sizes)
            index, sizes = await pipe.execute()
        out = []
        for k, raw in index.items():
            n = sizes.get(k)
            if n is None:
                continue
            h = orjson.loads(raw)
            out.append(Group(key=rc.text(k), rule=h["rule"], routing_key="", key_name=h["key_name"],
                             group_labels=h["group_labels"], opened_at=h["opened_at"],
                             triggered=h["triggered"], state=GroupState.from_dict(h["state"]),
                             n_alerts=int(n)))
        return out

    @rc.wrapped
    async def load_many(self, keys: Sequence[str]) -> list[Group]:
        return await self._load(list(keys))

    @rc.wrapped
    async def groups_of(self, fingerprint: str) -> list[Group]:
        ks = [rc.text(k) for k in await self._r.smembers(self.n.fingerprint(fingerprint))]
        return await self._load(sorted(ks))

    # -- outbox --------------------------------------------------------------------
    @rc.wrapped
    async def enqueue(self, events: Sequence[OutEvent]) -> None:
        if not events:
            return
        kl = rc.Keys(self._outbox_fixed())
        strs: list[bytes] = []
        es = rc.events(events, kl, self.n, strs)
        now = max(e.enqueued_at for e in events)
        await self._run("enqueue", kl.keys, orjson.dumps({"now": now, "e": es}), *strs, durable=True)

    @rc.wrapped
    async def outbox_keys(self) -> list[str]:
        return [rc.text(v) for v in await self._r.hvals(self.n.ob_keys)]

    @rc.wrapped
    async def take(self, routing_key: str, now: float, lease: float, window: Window) -> Take:
        n = self.n
        _, ready, wait, age = n.outbox(routing_key)
        raw, w, *stamp = await self._run(
            "take", [n.ob_items, ready, wait, age, n.budget(routing_key), n.bud_seq,
                     n.pause(routing_key)], now, lease, window.limit, window.seconds, window.reserve)
        if raw is None:
            return Take(None, math.inf if rc.text(w) == "inf" else float(w))
        return Take(rc.event(raw), 0.0, int(stamp[0]))

    def _pop_keys(self, ev: OutEvent) -> list[str]:
        return [*self._outbox_fixed(), *self.n.outbox(ev.routing_key), self.n.budget(ev.routing_key)]

    @rc.wrapped
    async def done(self, ev: OutEvent, stamp: int, now: float) -> None:
        await self._run("done", self._pop_keys(ev), keys.rid(ev.routing_key), ev.dedup_key,
                        ev.seq, stamp, now)

    @rc.wrapped
    async def dead(self, ev: OutEvent, stamp: int, error: str, now: float) -> None:
        await self._run("dead", [*self._pop_keys(ev), self.n.ob_dead], keys.rid(ev.routing_key),
                        ev.dedup_key, ev.seq, stamp, now, error)

    def _head_keys(self, ev: OutEvent) -> list[str]:
        _, ready, wait, _ = self.n.outbox(ev.routing_key)
        return [self.n.ob_items, ready, wait, self.n.budget(ev.routing_key)]

    @rc.wrapped
    async def retry(self, ev: OutEvent, stamp: int, not_before: float, error: str, count: bool,
                    now: float) -> None:
        await self._run("retry", self._head_keys(ev), ev.seq, stamp, now, not_before, error,
                        1 if count else 0)

    @rc.wrapped
    async def release(self, ev: OutEvent, stamp: int, now: float) -> None:
        await self._run("release", self._head_keys(ev), ev.seq, stamp, now)

    @rc.wrapped
    async def pending(self, limit: int = 1000) -> list[OutEvent]:
        rks = await self.outbox_keys()
        async with self._r.pipeline(transaction=False) as pipe:
            for rk in rks:
                pipe.zrange(self.n.outbox(rk)[3], 0, limit - 1)
            seqs = sorted({int(s) for found in await pipe.execute() for s in found})[:limit]
        if not seqs:
            return []
        return [rc.event(r) for r in await self._r.hmget(self.n.ob_items, seqs) if r is not None]

    @rc.wrapped
    async def dead_letters(self, limit: int = 1000) -> list[OutEvent]:
        out: list[OutEvent] = []
        async for _, raw in self._r.hscan_iter(self.n.ob_dead, count=500):
            out.append(rc.event(raw))
        return sorted(out, key=lambda e: e.seq)[:limit]

    @rc.wrapped
    async def requeue_dead(self, seqs: Sequence[int] | None) -> int:
        chosen = [e for e in await self.dead_letters(limit=1 << 30) if seqs is None or e.seq in seqs]
        if not chosen:
            return 0
        kl = rc.Keys([*self._outbox_fixed(), self.n.ob_dead])
        es = [[e.seq, kl.outbox(self.n, e.routing_key)] for e in chosen]
        now = max(e.enqueued_at for e in chosen)
        return int(await self._run("requeue", kl.keys, orjson.dumps({"now": now, "e": es})))

    # -- budget --------------------------------------------------------------------
    @rc.wrapped
    async def pause(self, routing_key: str, until: float) -> None:
        await self._run("pause", [self.n.pause(routing_key)], repr(until), 3600 * 24)

    @rc.wrapped
    async def sent_in_window(self, routing_key: str, now: float, window: Window) -> int:
        return int(await self._r.zcount(self.n.budget(routing_key), f"({now - window.seconds}", "+inf"))

    @rc.wrapped
    async def stats(self, now: float, window: Window) -> Stats:
        n = self.n
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.zcard(n.due_urgent)
            pipe.zcard(n.due_other)
            pipe.hlen(n.ob_dead)
            pipe.hgetall(n.ob_names)
            pipe.zrange(n.due_urgent, 0, 0, withscores=True)
            pipe.zrange(n.due_other, 0, 0, withscores=True)
            urgent, other, dead, names, due_u, due_n = await pipe.execute()
        rids = sorted(names)  # every key that had events (its name stays once they are sent)
        async with self._r.pipeline(transaction=False) as pipe:
            for r in rids:
                age = n.outbox("", rc.text(r))[3]
                pipe.zcard(age)
                pipe.zrange(age, 0, 0, withscores=True)
                pipe.zcount(n.budget("", rc.text(r)), f"({now - window.seconds}", "+inf")
            raw = await pipe.execute()
        out: dict[str, KeyStats] = {}
        for i, r in enumerate(rids):
            depth, oldest, sent = raw[3 * i], raw[3 * i + 1], raw[3 * i + 2]
            if not depth and not sent:
                continue
            add_key(out, rc.text(names[r]), KeyStats(int(depth), float(oldest[0][1]) if oldest else now, int(sent)))
        dues = [float(z[0][1]) for z in (due_u, due_n) if z]
        return Stats(groups_open=int(urgent) + int(other), dead=int(dead), keys=out,
                     oldest_due=min(dues) if dues else None)

    @rc.wrapped
    async def add_counts(self, hour: int, counts: dict[str, float]) -> None:
        if counts:
            await self._run("add_counts", [self.n.count(hour), self.n.count(hour - COUNT_HOURS)],
                            orjson.dumps(counts), COUNT_FIELDS, (COUNT_HOURS + 1) * 3600)

    @rc.wrapped
    async def counts(self, since_hour: int) -> dict[int, dict[str, float]]:
        hours = list(range(since_hour, since_hour + COUNT_HOURS + 1))
        async with self._r.pipeline(transaction=False) as pipe:
            for h in hours:
                pipe.hgetall(self.n.count(h))
            raw = await pipe.execute()
        return {h: {rc.text(k): float(v) for k, v in d.items()} for h, d in zip(hours, raw, strict=True) if d}

    @rc.wrapped
    async def first_time(self, key: str, now: float, ttl: float) -> bool:
        return bool(await self._r.set(self.n.seen(key), "1", nx=True, ex=max(1, int(ttl))))

    @rc.wrapped
    async def ping(self) -> None:
        await self._r.ping()

    @rc.wrapped
    async def footprint(self) -> dict[str, int]:
        out: dict[str, int] = {"lines": 0}
        async for raw in self._r.scan_iter(match=self.n.all(), count=1000):
            rc.count_key(out, rc.text(raw)[len(self.n.p) + 1:])
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.hlen(self.n.ob_items)
            pipe.hlen(self.n.ob_dead)
            items, dead = await pipe.execute()
        out.update(events=int(items), dead=int(dead))
        return out

    async def close(self) -> None:
        await self._r.aclose()
