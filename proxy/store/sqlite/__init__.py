"""The embedded durable store: one SQLite file (standard library `sqlite3`, WAL), written
by one process of the proxy's own. `sqlite:///var/lib/alert-proxy/state.db` (absolute) or
`sqlite://.state/state.db` (relative); `?synchronous=normal` trades power-loss safety for
speed.

Durability: a request is answered 2xx only after its transaction committed. With
synchronous=FULL (the default) the WAL is synced at every commit: nothing answered 2xx is
lost to kill -9 or to a power loss. With synchronous=NORMAL it survives kill -9 (the WAL is
in the OS's cache) but a power loss may undo the last commits.

    schema.py     the file: its URL, tables, migration; rows to the model's objects
    engine.py     the engine: synchronous, typed, one batch of operations per transaction
      windows.py    its groups (record, claim, commit)
      outbox.py     its outbox (enqueue, take, done, retry, dead) and budget windows
    transport.py  the store's own process and the frames to it and back
    (here)        SqliteStore: the store's interface (store.base.Store), async, in the proxy

Orders use indexes (due groups, line heads by priority, budget stamps by time); the
gauges' counts are kept by the engine (the file's only writer) and mirrored here with each
answer, so no step reads the whole backlog.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Concatenate, ParamSpec, TypeVar

from proxy.errors import StoreError
from proxy.model import Group, OutEvent
from proxy.store.base import (
    ALL_ALERTS,
    TOMBSTONE_TTL,
    Commit,
    Entry,
    Job,
    Recorded,
    Resolved,
    Stats,
    Take,
    Window,
)
from proxy.store.sqlite.engine import Engine
from proxy.store.sqlite.schema import check_file, event_row, file_of, group_of, groups_of, path_of
from proxy.store.sqlite.tables import Counts
from proxy.store.sqlite.transport import Child
from proxy.store.sqlite.windows import CommitRow

__all__ = ["SqliteStore", "check_file", "file_of"]

P = ParamSpec("P")
R = TypeVar("R")


class SqliteStore:
    """The store's interface (store.base.Store), in the proxy's process; the work is done by
    the engine in the store's process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path, self._sync = path_of(url)
        self._child: Child | None = None
        self._counts = Counts()  # the engine's, mirrored from its answers

    def _process(self) -> Child:
        """The store's process for this event loop: started at the first call, again after
        it died (once a second at most if it could not open the file)."""
        child = self._child
        loop = asyncio.get_running_loop()
        if child is not None and child.ended and not child.started and loop.time() < child.born + 1.0:
            raise StoreError(child.ended)
        if child is None or child.ended or child.loop is not loop:
            if child is not None and not child.ended:  # started by another event loop: it ends
                child.stop()  # once it has run what it was sent
            self._counts = Counts()  # the new process's come with its first frame
            child = self._child = Child(self.path, self._sync, self._counts, loop)
        return child

    async def _do(self, op: Callable[Concatenate[Engine, P], R], /, *args: P.args, **kw: P.kwargs) -> R:
        """`op(engine, *args)` in the store's process, in a transaction; its result once
        committed and synced to the disk (at the URL's level)."""
        assert not kw, "operations take their arguments in order"
        result: R = await self._process().call(op, args, True)
        return result

    async def _unsynced(self, op: Callable[Concatenate[Engine, P], R], /, *args: P.args,
                        **kw: P.kwargs) -> R:
        """As `_do`, but its transaction is not synced unless another in its batch is."""
        assert not kw, "operations take their arguments in order"
        result: R = await self._process().call(op, args, False)
        return result

    # -- windows ------------------------------------------------------------------------------
    async def record(self, entries: Sequence[Entry], resolved: Sequence[Resolved], now: float,
                     marks: Sequence[tuple[str, str]] = (), max_groups: int = 1 << 62) -> Recorded:
        if not entries and not resolved and not marks:
            return Recorded()
        rows = [(e.group_key, (e.meta.rule, e.meta.routing_key, e.meta.key_name, e.meta.group_labels),
                 e.fingerprint, e.alert_json, e.group_wait, e.group_interval,
                 e.resolve_wait, e.max_alerts, e.urgent) for e in entries]
        return Recorded(*await self._do(Engine.record, rows, list(resolved), now, list(marks), max_groups))

    async def marked(self, marks: Sequence[str]) -> dict[str, set[str]]:
        return await self._do(Engine.marked, list(marks))

    async def claim_due(self, now: float, lease: float, limit: int,
                        alerts: int = ALL_ALERTS) -> list[Group]:
        groups = groups_of(await self._unsynced(Engine.claim_due, now, lease, limit, alerts))  # it writes nothing
        for g in groups:
            g.due = now + lease
        return groups

    async def load(self, key: str) -> Group | None:
        found = groups_of(await self._do(Engine.load, [key]))
        return found[0] if found else None

    async def commit(self, commits: Sequence[Commit], durable: bool = True) -> list[bool]:
        if not commits:
            return []
        rows: list[CommitRow] = []
        for cm in commits:
            g = cm.group
            rows.append((g.key, g.version, cm.delete, g.last_flush_at + TOMBSTONE_TTL,
                         None if cm.delete else (g.due, int(g.triggered), int(g.grown), g.last_trigger_at,
                                                 g.last_flush_at, g.state.to_json(), g.key),
                         [event_row(ev) for ev in cm.events]))
        return await (self._do if durable else self._unsynced)(Engine.commit, rows)

    async def groups(self) -> list[Group]:
        return groups_of(await self._do(Engine.groups))

    async def heads(self) -> list[Group]:
        return [group_of(row) for row in await self._do(Engine.heads)]

    async def load_many(self, keys: Sequence[str]) -> list[Group]:
        return groups_of(await self._do(Engine.load, list(keys)))

    async def groups_of(self, fingerprint: str) -> list[Group]:
        return groups_of(await self._do(Engine.groups_of, fingerprint))

    # -- outbox -------------------------------------------------------------------------------
    async def enqueue(self, events: Sequence[OutEvent]) -> None:
        if events:
            await self._do(Engine.enqueue, list(events))

    async def outbox_keys(self) -> list[str]:
        return [rk for rk, n in list(self._counts.depth.items()) if n]

    async def take(self, routing_key: str, now: float, lease: float, window: Window) -> Take:
        if not self._counts.depth.get(routing_key):
            return Take(None, math.inf)
        return await self._do(Engine.take, routing_key, now, lease, window)

    async def done(self, ev: OutEvent, stamp: int, now: float) -> None:
        await self._do(Engine.done, ev, stamp, now)

    async def retry(self, ev: OutEvent, stamp: int, not_before: float, error: str, count: bool,
                    now: float) -> None:
        await self._do(Engine.retry, ev, stamp, not_before, error, count, now)

    async def release(self, ev: OutEvent, stamp: int, now: float) -> None:
        await self._do(Engine.release, ev, stamp, now)

    async def dead(self, ev: OutEvent, stamp: int, error: str, now: float) -> None:
        await self._do(Engine.dead, ev, stamp, error, now)

    async def pending(self, limit: int = 1000) -> list[OutEvent]:
        return await self._do(Engine.pending, limit)

    async def dead_letters(self, limit: int = 1000) -> list[OutEvent]:
        return await self._do(Engine.dead_letters, limit)

    async def requeue_dead(self, seqs: Sequence[int] | None) -> int:
        return await self._do(Engine.requeue_dead, None if seqs is None else sorted(set(seqs)))

    # -- budget, counts, health ---------------------------------------------------------------
    async def pause(self, routing_key: str, until: float) -> None:
        await self._do(Engine.pause, routing_key, until)

    async def sent_in_window(self, routing_key: str, now: float, window: Window) -> int:
        return await self._do(Engine.sent_in_window, routing_key, now, window)

    async def stats(self, now: float, window: Window) -> Stats:
        return await self._do(Engine.stats, now, window)

    async def add_counts(self, hour: int, counts: dict[str, float]) -> None:
        if counts:
            await self._do(Engine.add_counts, hour, counts)

    async def counts(self, since_hour: int) -> dict[int, dict[str, float]]:
        return await self._do(Engine.hourly, since_hour)

    async def first_time(self, key: str, now: float, ttl: float) -> bool:
        return await self._do(Engine.first_time, key, now, ttl)

    async def add_job(self, job: Job, now: float) -> bool:
        return await self._do(Engine.add_job, (job.id, job.blob, job.tries, job.error), now)

    async def claim_jobs(self, now: float, lease: float, limit: int) -> list[Job]:
        return [Job(*row) for row in await self._do(Engine.claim_jobs, now, lease, limit)]

    async def end_job(self, job: Job, how: str, now: float, due: float = 0.0) -> None:
        await self._do(Engine.end_job, (job.id, job.blob, job.tries, job.error), how, now, due)

    async def dead_jobs(self, limit: int = 1000) -> list[Job]:
        return [Job(*row) for row in await self._do(Engine.dead_jobs, limit)]

    async def memo(self, key: str, value: str | None, now: float) -> str | None:
        return await self._do(Engine.memo, key, value, now)

    async def put_silence(self, sid: str, blob: str, ends_at: float) -> None:
        await self._do(Engine.put_silence, sid, blob, ends_at)

    async def silences(self) -> list[str]:
        return await self._do(Engine.silences)

    async def forget_silences(self, ended_before: float) -> int:
        return await self._do(Engine.forget_silences, ended_before)

    async def heartbeat(self, name: str, kind: str, now: float, limit: float) -> bool:
        return await self._do(Engine.heartbeat, name, kind, now, limit)

    async def heartbeats(self) -> dict[str, tuple[float, bool]]:
        return await self._do(Engine.heartbeats)

    async def ping(self) -> None:
        await self._do(Engine.ping)

    async def footprint(self) -> dict[str, int]:
        return await self._do(Engine.footprint)

    async def close(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            await child.close(10)
