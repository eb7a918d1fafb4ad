"""The Redis store: windows, outbox and budgets shared by every replica on one Redis.

Each atomic step is one Lua script in lua/ (loaded once with importlib.resources and run
by EVALSHA, reloaded by redis-py when a restarted Redis has forgotten it). Recording a
request's alerts is one round trip whatever their number. Driver errors become
StoreError, which the HTTP layer answers with 503."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine, Sequence
from importlib import resources
from typing import Any, ParamSpec, TypeVar

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from proxy.errors import StoreError
from proxy.model import Group, GroupAlert, OutEvent
from proxy.store import keys
from proxy.store.base import Entry, Resolved, Stats

__all__ = ["RedisStore"]

P = ParamSpec("P")
T = TypeVar("T")

GROUP_TTL = 7 * 86400.0  # a group nobody touched for a week is forgotten
_LIBS = {"record": "lib_windows", "claim_due": "lib_windows", "commit": "lib_windows+lib_outbox",
         "enqueue": "lib_outbox", "take": "lib_outbox", "done": "lib_outbox", "dead": "lib_outbox",
         "retry": "lib_outbox", "requeue": "lib_outbox", "acquire": ""}


def _lua(name: str) -> str:
    pkg = resources.files("proxy.store") / "lua"
    libs = [(pkg / f"{lib}.lua").read_text() for lib in filter(None, _LIBS[name].split("+"))]
    return "\n".join([*libs, (pkg / f"{name}.lua").read_text()])


def _wrapped(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Redis and socket errors become StoreError (the cause is chained)."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except (RedisError, OSError) as e:
            raise StoreError(f"redis: {type(e).__name__}: {e}") from e

    return call


def _event_json(ev: OutEvent) -> dict[str, Any]:
    return {"rid": keys.rid(ev.routing_key), "rk": ev.routing_key, "dk": ev.dedup_key,
            "action": ev.action, "severity": ev.severity, "prio": ev.priority,
            "body": ev.body.decode(), "key_name": ev.key_name, "enqueued_at": ev.enqueued_at,
            "attempts": ev.attempts, "not_before": ev.not_before, "last_error": ev.last_error}


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _event(raw: bytes | str) -> OutEvent:
    d = orjson.loads(raw)
    return OutEvent(routing_key=d["rk"], dedup_key=d["dk"], action=d["action"],
                    severity=d["severity"], body=d["body"].encode(), key_name=d["key_name"],
                    seq=int(d["seq"]), attempts=int(d["attempts"]),
                    not_before=float(d["not_before"]), enqueued_at=float(d["enqueued_at"]),
                    last_error=d["last_error"] or "")


class RedisStore:
    def __init__(self, url: str, prefix: str = "alert-proxy") -> None:
        self.url = url
        self.p = keys.tagged(prefix)
        self._r = aioredis.from_url(url, socket_timeout=3, socket_connect_timeout=2,
                                    health_check_interval=10)
        self._s = {name: self._r.register_script(_lua(name)) for name in _LIBS}

    async def _run(self, name: str, *args: Any) -> Any:
        return await self._s[name](keys=[self.p], args=list(args))

    # -- windows -------------------------------------------------------------------
    @_wrapped
    async def record(self, entries: Sequence[Entry], orphans: Sequence[Resolved],
                     now: float, marks: Sequence[tuple[str, str]] = ()) -> None:
        if not entries and not orphans and not marks:
            return
        es = [[e.group_key, {**e.meta, "group_interval": e.group_interval,
                             "resolve_wait": e.resolve_wait},
               e.fingerprint, e.status, e.alert_json, e.group_wait, e.max_alerts]
              for e in entries]
        os_ = [[o.fingerprint, o.alert_json, o.full] for o in orphans]
        await self._run("record", now, orjson.dumps(es), orjson.dumps(os_), GROUP_TTL,
                        orjson.dumps(marks))

    @_wrapped
    async def marked(self, marks: Sequence[str]) -> dict[str, set[str]]:
        async with self._r.pipeline(transaction=False) as pipe:
            for m in marks:
                pipe.smembers(keys.inhibit_mark(self.p, m))
            raw = await pipe.execute()
        return {m: {fp.decode() for fp in fps} for m, fps in zip(marks, raw, strict=True)}

    @_wrapped
    async def claim_due(self, now: float, lease: float, limit: int) -> list[str]:
        return [_text(k) for k in await self._run("claim_due", now, lease, limit)]

    @_wrapped
    async def load(self, key: str) -> Group | None:
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.group(self.p, key))
            pipe.hgetall(keys.group_alerts(self.p, key))
            pipe.hgetall(keys.group_status(self.p, key))
            f, alerts, status = await pipe.execute()
        if not f:
            return None
        return self._group(key, f, alerts, status)

    @staticmethod
    def _group(key: str, f: dict[bytes, bytes], alerts: dict[bytes, bytes],
               status: dict[bytes, bytes]) -> Group:
        s = {k.decode(): v.decode() for k, v in f.items()}
        g = Group(key=key, rule=s["rule"], routing_key=s["routing_key"], key_name=s["key_name"],
                  group_labels=orjson.loads(s["group_labels"]), triggered=s["triggered"] == "1",
                  grown=s["grown"] == "1", overflow=int(s["overflow"]), version=int(s["version"]),
                  group_interval=float(s["group_interval"]), resolve_wait=float(s["resolve_wait"]),
                  opened_at=float(s["opened_at"]), due=float(s["due"]),
                  last_trigger_at=float(s["last_trigger_at"]),
                  last_flush_at=float(s["last_flush_at"]))
        for fp, raw in alerts.items():
            g.alerts[fp.decode()] = GroupAlert.from_json(raw, status.get(fp, b"firing").decode())
        return g

    @_wrapped
    async def commit(self, g: Group, delete: bool, events: Sequence[OutEvent]) -> bool:
        fields = {"due": g.due, "triggered": "1" if g.triggered else "0",
                  "grown": "1" if g.grown else "0", "last_trigger_at": g.last_trigger_at,
                  "last_flush_at": g.last_flush_at}
        ok = await self._run("commit", g.key, str(g.version), "1" if delete else "0",
                             orjson.dumps(fields), orjson.dumps([_event_json(e) for e in events]),
                             g.last_flush_at, GROUP_TTL)
        return bool(ok)

    async def _groups(self, group_keys: list[str]) -> list[Group]:
        async with self._r.pipeline(transaction=False) as pipe:
            for k in group_keys:
                pipe.hgetall(keys.group(self.p, k))
                pipe.hgetall(keys.group_alerts(self.p, k))
                pipe.hgetall(keys.group_status(self.p, k))
            raw = await pipe.execute()
        return [self._group(k, raw[3 * i], raw[3 * i + 1], raw[3 * i + 2])
                for i, k in enumerate(group_keys) if raw[3 * i]]

    @_wrapped
    async def groups(self) -> list[Group]:
        ks = [_text(k) for k in await self._r.zrange(keys.due(self.p), 0, -1)]
        return await self._groups(ks)

    @_wrapped
    async def groups_of(self, fingerprint: str) -> list[Group]:
        ks = [_text(k) for k in await self._r.smembers(keys.fingerprint(self.p, fingerprint))]
        return await self._groups(ks)

    # -- outbox --------------------------------------------------------------------
    @_wrapped
    async def enqueue(self, events: Sequence[OutEvent]) -> None:
        if events:
            now = max(e.enqueued_at for e in events)
            await self._run("enqueue", now, orjson.dumps([_event_json(e) for e in events]))

    @_wrapped
    async def outbox_keys(self) -> list[str]:
        return [_text(v) for v in await self._r.hvals(keys.outbox_keys(self.p))]

    @_wrapped
    async def take(self, routing_key: str, now: float, lease: float) -> OutEvent | None:
        raw = await self._run("take", keys.rid(routing_key), now, lease)
        return _event(raw) if raw else None

    @_wrapped
    async def done(self, ev: OutEvent, now: float) -> None:
        await self._run("done", keys.rid(ev.routing_key), ev.dedup_key, ev.seq, now)

    @_wrapped
    async def retry(self, ev: OutEvent, not_before: float, error: str, count: bool,
                    now: float) -> None:
        await self._run("retry", keys.rid(ev.routing_key), ev.dedup_key, ev.seq, now,
                        not_before, error, 1 if count else 0)

    @_wrapped
    async def dead(self, ev: OutEvent, error: str, now: float) -> None:
        await self._run("dead", keys.rid(ev.routing_key), ev.dedup_key, ev.seq, now, error)

    @_wrapped
    async def pending(self) -> list[OutEvent]:
        return sorted((_event(v) for v in (await self._r.hgetall(keys.items(self.p))).values()),
                      key=lambda e: e.seq)

    @_wrapped
    async def dead_letters(self) -> list[OutEvent]:
        return sorted((_event(v) for v in (await self._r.hgetall(keys.dead(self.p))).values()),
                      key=lambda e: e.seq)

    @_wrapped
    async def requeue_dead(self, seqs: Sequence[int] | None) -> int:
        arg = "all" if seqs is None else orjson.dumps([str(s) for s in seqs])
        return int(await self._run("requeue", time.time(), arg))

    # -- budget --------------------------------------------------------------------
    @_wrapped
    async def acquire(self, routing_key: str, rate: float, burst: float, now: float) -> float:
        return float(await self._run("acquire", keys.rid(routing_key), rate, burst, now))

    @_wrapped
    async def pause(self, routing_key: str, until: float) -> None:
        k = keys.pause(self.p, routing_key)
        cur = await self._r.get(k)
        if cur is None or float(cur) < until:
            await self._r.set(k, str(until), ex=max(1, int(until - time.time()) + 60))

    @_wrapped
    async def paused_until(self, routing_key: str) -> float:
        v = await self._r.get(keys.pause(self.p, routing_key))
        return float(v) if v is not None else 0.0

    @_wrapped
    async def stats(self) -> Stats:
        async with self._r.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.due(self.p))
            pipe.hlen(keys.dead(self.p))
            pipe.hvals(keys.items(self.p))
            n_groups, n_dead, items = await pipe.execute()
        pending = []
        for raw in items:
            d = orjson.loads(raw)
            pending.append((d["key_name"], float(d["enqueued_at"])))
        return Stats(groups_open=int(n_groups), dead=int(n_dead), pending=pending)

    @_wrapped
    async def ping(self) -> None:
        await self._r.ping()

    async def close(self) -> None:
        await self._r.aclose()
