"""The embedded durable store: one SQLite file (standard library `sqlite3`, WAL), one
process. `sqlite:///var/lib/alert-proxy/state.db` (absolute) or `sqlite://.state/state.db`
(relative); `?synchronous=normal` trades power-loss safety for speed.

Durability: a request is answered 2xx only after its transaction committed. With
synchronous=FULL (the default) the WAL is synced at every commit: nothing answered 2xx is
lost to kill -9 or to a power loss. With synchronous=NORMAL it survives kill -9 (the WAL is
in the OS's cache) but a power loss may undo the last commits.

The event loop never waits on SQLite: one thread owns the connection, and every call is
a job on its queue. The thread runs all the jobs waiting in one transaction (group
commit: one sync for many requests), each job in a savepoint of its own so one that fails
does not undo the others. Orders use indexes (due groups, line heads by priority, budget
stamps by time); the gauges' counts are kept in this process (it is the file's only
writer), so no step reads the whole backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import queue
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson

from proxy.errors import ConfigError, StoreError, StoreFull
from proxy.model import URGENT, Group, GroupAlert, OutEvent
from proxy.store.base import (
    COUNT_HOURS,
    TOMBSTONE_TTL,
    Commit,
    Entry,
    KeyStats,
    Resolved,
    Stats,
    Take,
    Window,
    capped,
)
from proxy.store.memory import join_status, split_status

__all__ = ["SqliteStore"]

T = TypeVar("T")
_Job = tuple[Callable[[sqlite3.Connection], Any], "Future[Any]", bool]  # fn, its result, durable
_BATCH = 256  # jobs per transaction at most
_SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
  key TEXT PRIMARY KEY, rule TEXT NOT NULL, routing_key TEXT NOT NULL, key_name TEXT NOT NULL,
  group_labels TEXT NOT NULL, group_interval REAL NOT NULL, resolve_wait REAL NOT NULL,
  opened_at REAL NOT NULL, due REAL NOT NULL, urgent INTEGER NOT NULL, triggered INTEGER NOT NULL,
  grown INTEGER NOT NULL, last_trigger_at REAL NOT NULL, last_flush_at REAL NOT NULL,
  overflow INTEGER NOT NULL, version INTEGER NOT NULL, last_seen REAL NOT NULL,
  n_alerts INTEGER NOT NULL, state TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS groups_due ON groups(urgent, due);
CREATE TABLE IF NOT EXISTS alerts (
  gkey TEXT NOT NULL, fp TEXT NOT NULL, status TEXT NOT NULL, json TEXT NOT NULL,
  PRIMARY KEY (gkey, fp)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alerts_fp ON alerts(fp);
CREATE TABLE IF NOT EXISTS tombs (key TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tombs_until ON tombs(until);
CREATE TABLE IF NOT EXISTS marks (mark TEXT NOT NULL, fp TEXT NOT NULL, PRIMARY KEY (mark, fp))
  WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS marks_fp ON marks(fp);
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY, rk TEXT NOT NULL, dk TEXT NOT NULL, action TEXT NOT NULL,
  severity TEXT NOT NULL, prio INTEGER NOT NULL, body BLOB NOT NULL, key_name TEXT NOT NULL,
  attempts INTEGER NOT NULL, not_before REAL NOT NULL, enqueued_at REAL NOT NULL,
  last_error TEXT NOT NULL, lease REAL NOT NULL, head INTEGER NOT NULL, wait_until REAL NOT NULL);
CREATE INDEX IF NOT EXISTS ob_ready ON outbox(rk, prio, seq) WHERE head = 1 AND wait_until = 0;
CREATE INDEX IF NOT EXISTS ob_wait ON outbox(rk, wait_until) WHERE head = 1 AND wait_until > 0;
CREATE INDEX IF NOT EXISTS ob_line ON outbox(rk, dk, seq);
CREATE INDEX IF NOT EXISTS ob_age ON outbox(rk, enqueued_at);
CREATE TABLE IF NOT EXISTS dead (
  seq INTEGER PRIMARY KEY, rk TEXT NOT NULL, dk TEXT NOT NULL, action TEXT NOT NULL,
  severity TEXT NOT NULL, body BLOB NOT NULL, key_name TEXT NOT NULL, attempts INTEGER NOT NULL,
  enqueued_at REAL NOT NULL, last_error TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stamps (id INTEGER PRIMARY KEY, rk TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS stamps_rk ON stamps(rk, at);
CREATE TABLE IF NOT EXISTS pauses (rk TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, until REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts (hour INTEGER NOT NULL, field TEXT NOT NULL, n REAL NOT NULL,
  PRIMARY KEY (hour, field)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_until ON seen(until);
"""
_GROUP_COLS = ("key, rule, routing_key, key_name, group_labels, group_interval, resolve_wait, "
               "opened_at, due, urgent, triggered, grown, last_trigger_at, last_flush_at, overflow, "
               "version, last_seen, n_alerts, state")
_INSERT_EVENT = ("INSERT INTO outbox (rk, dk, action, severity, prio, body, key_name, attempts, "
                 "not_before, enqueued_at, last_error, lease, head, wait_until) "
                 "VALUES (?,?,?,?,?,?,?,?,?,?,?,0,?,?)")
_EVENT_COLS = "seq, rk, dk, action, severity, body, key_name, attempts, not_before, enqueued_at, last_error"


def _path(url: str) -> tuple[Path, str]:
    u = urlsplit(url)
    raw = (u.netloc + u.path) if u.netloc else u.path
    if not raw:
        raise ConfigError([f"--store: {url!r}: give a file, e.g. sqlite:///var/lib/alert-proxy/state.db"])
    sync = parse_qs(u.query).get("synchronous", ["full"])[0].upper()
    if sync not in ("FULL", "NORMAL", "EXTRA"):
        raise ConfigError([f"--store: {url!r}: synchronous must be full, normal or extra"])
    return Path(raw), sync


def _event(row: Sequence[Any]) -> OutEvent:
    seq, rk, dk, action, severity, body, key_name, attempts, not_before, enq, err = row
    return OutEvent(routing_key=rk, dedup_key=dk, action=action, severity=severity, body=bytes(body),
                    key_name=key_name, seq=seq, attempts=attempts, not_before=not_before,
                    enqueued_at=enq, last_error=err)


def _chunks(items: Sequence[T], n: int = 400) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


class SqliteStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.path, self._sync = _path(url)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._synced = self._sync  # the connection's synchronous level now
        self._thread: threading.Thread | None = None
        self._opened: Future[None] = Future()
        # counts kept as work happens (this process is the file's only writer)
        self._n_groups = 0
        self._depth: dict[str, int] = {}
        self._names: dict[str, str] = {}
        self._n_dead = 0
        self._deltas: list[tuple[str, str, int]] = []  # this job's count changes, kept if it commits
        self._leased: dict[str, float] = {}  # group key -> lease end (claim_due); the store thread's

    # -- the thread ------------------------------------------------------------------
    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="alert-proxy-sqlite", daemon=True)
            self._thread.start()

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        if fresh:
            os.chmod(self.path, 0o600)  # it holds routing keys
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._sync}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-65536")
        conn.executescript(_SCHEMA)
        self._n_groups = conn.execute("SELECT COUNT(*) FROM groups").fetchone()[0]
        self._n_dead = conn.execute("SELECT COUNT(*) FROM dead").fetchone()[0]
        for rk, name, n in conn.execute("SELECT rk, key_name, COUNT(*) FROM outbox GROUP BY rk"):
            self._depth[rk], self._names[rk] = n, name
        return conn

    def _serve(self) -> None:
        try:
            conn = self._open()
        except (sqlite3.Error, OSError) as e:
            self._opened.set_exception(StoreError(f"sqlite: {self.path}: {e}"))
            return
        self._opened.set_result(None)
        while True:
            first = self._jobs.get()
            if first is None:
                conn.close()
                return
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._jobs.put(None)
                    break
                batch.append(job)
            self._run_batch(conn, batch)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        results: list[tuple[Future[Any], Any, BaseException | None]] = []
        kept: list[tuple[str, str, int]] = []
        try:
            sync = self._sync if any(durable for _, _, durable in batch) else "NORMAL"
            if sync != self._synced:  # WAL: a later synced commit syncs this one's frames too
                conn.execute(f"PRAGMA synchronous={sync}")
                self._synced = sync
            conn.execute("BEGIN IMMEDIATE")
            for fn, fut, _ in batch:
                self._deltas = []
                conn.execute("SAVEPOINT job")
                try:
                    results.append((fut, fn(conn), None))
                    conn.execute("RELEASE job")
                    kept += self._deltas
                except Exception as e:  # noqa: BLE001 - any failure is this job's alone: undone, told to its caller
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append((fut, None, e))
            conn.execute("COMMIT")
            for what, rk, n in kept:
                self._apply(what, rk, n)
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            err = StoreError(f"sqlite: {type(e).__name__}: {e}")
            results = [(fut, None, err) for _, fut, _ in batch]
        for fut, value, exc in results:
            if isinstance(exc, sqlite3.Error) and not isinstance(exc, StoreError):
                exc = StoreError(f"sqlite: {type(exc).__name__}: {exc}")
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(value)

    def _count(self, what: str, n: int, rk: str = "", name: str = "") -> None:
        """A change of the counts, applied once the job's transaction commits."""
        self._deltas.append((what, rk, n))
        if name:
            self._deltas.append(("name:" + name, rk, 0))

    def _apply(self, what: str, rk: str, n: int) -> None:
        if what == "groups":
            self._n_groups += n
        elif what == "dead":
            self._n_dead += n
        elif what == "depth":
            self._depth[rk] = self._depth.get(rk, 0) + n
        else:
            self._names[rk] = what[len("name:"):]

    async def _do(self, fn: Callable[[sqlite3.Connection], T], durable: bool = True) -> T:
        """Run `fn(conn)` in the store's thread, in a transaction; its result once committed
        (`durable`: synced to the disk, at the URL's level; else perhaps not yet)."""
        self._start()
        fut: Future[T] = Future()
        self._jobs.put((fn, fut, durable))
        return await asyncio.wrap_future(fut)

    # -- windows -------------------------------------------------------------------
    async def record(self, entries: Sequence[Entry], resolved: Sequence[Resolved], now: float,
                     marks: Sequence[tuple[str, str]] = (), max_groups: int = 1 << 62) -> int:
        if not entries and not resolved and not marks:
            return 0
        return await self._do(lambda c: self._record(c, entries, resolved, now, marks, max_groups))

    def _record(self, c: sqlite3.Connection, entries: Sequence[Entry], resolved: Sequence[Resolved],
                now: float, marks: Sequence[tuple[str, str]], max_groups: int) -> int:
        """A whole request in a fixed number of statements, whatever its number of groups."""
        c.execute("DELETE FROM tombs WHERE until <= ?", (now,))
        if marks:
            c.executemany("INSERT OR IGNORE INTO marks (mark, fp) VALUES (?, ?)", marks)
        # what goes where: group key -> [(fp, status, json, full)], and each group's max_alerts
        puts: dict[str, list[tuple[str, str, str, bool]]] = {}
        caps: dict[str, int] = {}
        first: dict[str, Entry] = {}
        for e in entries:
            puts.setdefault(e.group_key, []).append((e.fingerprint, "firing", e.alert_json, True))
            caps[e.group_key] = e.max_alerts
            first.setdefault(e.group_key, e)
        held: dict[str, list[str]] = {}
        if resolved:
            fps = [r.fingerprint for r in resolved]
            c.executemany("DELETE FROM marks WHERE fp = ?", [(fp,) for fp in fps])
            for chunk in _chunks(fps):
                q = f"SELECT fp, gkey FROM alerts WHERE fp IN ({','.join('?' * len(chunk))})"
                for fp, gkey in c.execute(q, chunk):
                    held.setdefault(fp, []).append(gkey)
            for r in resolved:
                for gkey in held.get(r.fingerprint, ()):
                    puts.setdefault(gkey, []).append((r.fingerprint, "resolved", r.alert_json, r.full))
                    caps.setdefault(gkey, 1 << 62)
        heads = self._heads(c, list(puts))
        new = [e for k, e in first.items() if k not in heads]
        if new and self._n_groups + len(new) > max_groups:
            raise StoreFull(max_groups)
        if new:
            c.executemany(f"INSERT INTO groups ({_GROUP_COLS}) VALUES "
                          "(?,?,?,?,?,?,?,?,?,?,0,0,0,0,0,0,?,0,'{}')",
                          [(e.group_key, e.meta["rule"], e.meta["routing_key"], e.meta["key_name"],
                            orjson.dumps(e.meta["group_labels"]).decode(), e.group_interval,
                            e.resolve_wait, now, now + e.group_wait, int(e.urgent), now) for e in new])
            self._count("groups", len(new))
            for e in new:
                heads[e.group_key] = {"key": e.group_key, "due": now + e.group_wait,
                                      "urgent": int(e.urgent), "triggered": 0, "grown": 0,
                                      "last_flush_at": 0.0, "overflow": 0, "version": 0,
                                      "last_seen": now, "n_alerts": 0,
                                      "group_interval": e.group_interval, "resolve_wait": e.resolve_wait}
        for e in entries:
            if e.urgent and e.group_key in heads:
                heads[e.group_key]["urgent"] = 1
        self._put_many(c, heads, puts, caps, now)
        lost: list[OutEvent] = []
        candidates = [(k, ev) for r in resolved if r.fingerprint not in held for k, ev in r.candidates]
        if candidates:
            ks = list(dict.fromkeys(k for k, _ in candidates))
            known: set[str] = set()
            for chunk in _chunks(ks):
                marks_ = ",".join("?" * len(chunk))
                known.update(k for (k,) in c.execute(
                    f"SELECT key FROM groups WHERE key IN ({marks_}) UNION "
                    f"SELECT key FROM tombs WHERE key IN ({marks_})", (*chunk, *chunk)))
            for key, ev in candidates:
                if key not in known:
                    known.add(key)
                    c.execute("INSERT OR REPLACE INTO tombs (key, until) VALUES (?, ?)",
                              (key, now + TOMBSTONE_TTL))
                    lost.append(ev)
        self._enqueue(c, lost)
        return len(lost)

    @staticmethod
    def _heads(c: sqlite3.Connection, keys: list[str]) -> dict[str, dict[str, Any]]:
        names = ("key", "due", "urgent", "triggered", "grown", "last_flush_at", "overflow", "version",
                 "last_seen", "n_alerts", "group_interval", "resolve_wait")
        out: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(keys):
            q = (f"SELECT {', '.join(names)} FROM groups WHERE key IN ({','.join('?' * len(chunk))})")
            for row in c.execute(q, chunk):
                out[row[0]] = dict(zip(names, row, strict=True))
        return out

    @staticmethod
    def _put_many(c: sqlite3.Connection, heads: dict[str, dict[str, Any]],
                  puts: dict[str, list[tuple[str, str, str, bool]]], caps: dict[str, int],
                  now: float) -> None:
        """Alerts into their groups, by the scheduling rule of store.base: one read of the
        alerts the groups already hold, then one batch of writes of each kind."""
        wanted = {(k, fp) for k, alerts in puts.items() if k in heads for fp, *_ in alerts}
        have: dict[tuple[str, str], tuple[str, str]] = {}
        for chunk in _chunks(list({fp for _, fp in wanted})):  # by the fingerprint index
            q = f"SELECT gkey, fp, status, json FROM alerts WHERE fp IN ({','.join('?' * len(chunk))})"
            for gkey, fp, st, js in c.execute(q, chunk):
                if (gkey, fp) in wanted:
                    have[(gkey, fp)] = (st, js)
        inserts, updates = [], []
        for key, alerts in puts.items():
            g = heads.get(key)
            if g is None:
                continue
            for fp, status, js, full in alerts:
                g["last_seen"] = now
                old = have.get((key, fp))
                if old is None:
                    if status != "firing":
                        continue
                    if g["n_alerts"] >= caps[key]:
                        g["overflow"] += 1
                        continue
                    have[(key, fp)] = (status, js)
                    g["n_alerts"] += 1
                    inserts.append((key, fp, status, js))
                else:
                    raw, old_js = old
                    prev, changes = split_status(raw)
                    new = (raw if prev == status else join_status(status, (*changes, now)),
                           js if full else old_js)
                    if new == old:
                        continue
                    have[(key, fp)] = new
                    updates.append((*new, key, fp))
                    if prev == status:
                        continue
                g["version"] += 1
                if g["last_flush_at"] > 0:
                    if status == "firing" and g["triggered"]:
                        g["grown"] = 1
                    wait = g["group_interval"] if status == "firing" else g["resolve_wait"]
                    g["due"] = min(g["due"], max(now, g["last_flush_at"] + wait))
        if inserts:
            c.executemany("INSERT INTO alerts (gkey, fp, status, json) VALUES (?, ?, ?, ?)", inserts)
        if updates:
            c.executemany("UPDATE alerts SET status = ?, json = ? WHERE gkey = ? AND fp = ?", updates)
        c.executemany("UPDATE groups SET due = ?, urgent = ?, grown = ?, overflow = ?, version = ?, "
                      "last_seen = ?, n_alerts = ? WHERE key = ?",
                      [(g["due"], g["urgent"], g["grown"], g["overflow"], g["version"], g["last_seen"],
                        g["n_alerts"], key) for key, g in heads.items() if key in puts])

    async def marked(self, marks: Sequence[str]) -> dict[str, set[str]]:
        def run(c: sqlite3.Connection) -> dict[str, set[str]]:
            out: dict[str, set[str]] = {m: set() for m in marks}
            for chunk in _chunks(list(marks)):
                q = f"SELECT mark, fp FROM marks WHERE mark IN ({','.join('?' * len(chunk))})"
                for m, fp in c.execute(q, chunk):
                    out[m].add(fp)
            return out

        return await self._do(run)

    async def claim_due(self, now: float, lease: float, limit: int) -> list[Group]:
        """The leases live in this process (the file has one writer): a claim writes
        nothing, and a group whose flusher died is due again at the restart."""
        def run(c: sqlite3.Connection) -> list[Group]:
            leased = self._leased
            keys: list[str] = []
            for lane in (1, 0):
                if len(keys) >= limit:
                    break
                for (k,) in c.execute(
                        "SELECT key FROM groups WHERE urgent = ? AND due <= ? ORDER BY due LIMIT ?",
                        (lane, now, limit - len(keys) + len(leased))):
                    if leased.get(k, 0.0) <= now:
                        keys.append(k)
                        if len(keys) >= limit:
                            break
            for k in [k for k, end in leased.items() if end <= now]:
                del leased[k]
            groups = self._load(c, keys)
            for g in groups:
                leased[g.key] = g.due = now + lease
            return groups

        return await self._do(run, durable=False)  # it writes nothing

    @staticmethod
    def _group_row(row: Sequence[Any]) -> Group:
        (key, rule, rk, name, labels, gi, rw, opened, due, urgent, trig, grown, ltr, lfl,
         overflow, version, seen, n_alerts, state) = row
        return Group(key=key, rule=rule, routing_key=rk, key_name=name,
                     group_labels=orjson.loads(labels), group_interval=gi, resolve_wait=rw,
                     opened_at=opened, due=due, triggered=bool(trig), grown=bool(grown),
                     last_trigger_at=ltr, last_flush_at=lfl, overflow=overflow, version=version,
                     last_seen=seen, urgent=bool(urgent), state=orjson.loads(state),
                     n_alerts=n_alerts)

    @staticmethod
    def _load(c: sqlite3.Connection, keys: Sequence[str]) -> list[Group]:
        groups: dict[str, Group] = {}
        for chunk in _chunks(list(keys)):
            marks = ",".join("?" * len(chunk))
            for row in c.execute(f"SELECT {_GROUP_COLS} FROM groups WHERE key IN ({marks})", chunk):
                groups[row[0]] = SqliteStore._group_row(row)
            for gkey, fp, raw, js in c.execute(
                    f"SELECT gkey, fp, status, json FROM alerts WHERE gkey IN ({marks})", chunk):
                status, changes = split_status(raw)
                groups[gkey].alerts[fp] = GroupAlert.from_json(js, status, changes)
        return [groups[k] for k in keys if k in groups]

    async def load(self, key: str) -> Group | None:
        found = await self._do(lambda c: self._load(c, [key]))
        return found[0] if found else None

    async def commit(self, commits: Sequence[Commit], durable: bool = True) -> list[bool]:
        def run(c: sqlite3.Connection) -> list[bool]:
            version: dict[str, int] = {}
            for chunk in _chunks([cm.group.key for cm in commits]):
                version.update(c.execute(f"SELECT key, version FROM groups WHERE key IN "
                                         f"({','.join('?' * len(chunk))})", chunk))
            out = [version.get(cm.group.key) == cm.group.version for cm in commits]
            for cm in commits:
                self._leased.pop(cm.group.key, None)
            done = [cm for cm, ok in zip(commits, out, strict=True) if ok]
            gone = [(cm.group.key,) for cm in done if cm.delete]
            if gone:
                c.executemany("DELETE FROM alerts WHERE gkey = ?", gone)
                c.executemany("DELETE FROM groups WHERE key = ?", gone)
                c.executemany("INSERT OR REPLACE INTO tombs (key, until) VALUES (?, ?)",
                              [(cm.group.key, cm.group.last_flush_at + TOMBSTONE_TTL)
                               for cm in done if cm.delete])
                self._count("groups", -len(gone))
            c.executemany("UPDATE groups SET due = ?, triggered = ?, grown = ?, last_trigger_at = ?, "
                          "last_flush_at = ?, state = ?, version = version + 1 WHERE key = ?",
                          [(g.due, int(g.triggered), int(g.grown), g.last_trigger_at, g.last_flush_at,
                            orjson.dumps(g.state).decode(), g.key)
                           for g in (cm.group for cm in done if not cm.delete)])
            self._enqueue(c, [ev for cm in done for ev in cm.events])
            return out

        return await self._do(run, durable) if commits else []

    async def groups(self) -> list[Group]:
        return await self._do(lambda c: self._load(c, [k for (k,) in c.execute(
            "SELECT key FROM groups ORDER BY opened_at")]))

    async def heads(self) -> list[Group]:
        def run(c: sqlite3.Connection) -> list[Group]:
            return [self._group_row(row) for row in c.execute(f"SELECT {_GROUP_COLS} FROM groups")]

        return await self._do(run)

    async def load_many(self, keys: Sequence[str]) -> list[Group]:
        return await self._do(lambda c: self._load(c, list(keys)))

    async def groups_of(self, fingerprint: str) -> list[Group]:
        return await self._do(lambda c: self._load(c, [k for (k,) in c.execute(
            "SELECT gkey FROM alerts WHERE fp = ? ORDER BY gkey", (fingerprint,))]))

    # -- outbox --------------------------------------------------------------------
    def _enqueue(self, c: sqlite3.Connection, events: Sequence[OutEvent]) -> None:
        """Append each event to its line (rk, dk); a trigger behind a trigger not yet leased
        replaces it. The lines' last events are read in one query per 400 lines, the new
        rows written in one statement unless a line gets two events in this call."""
        last: dict[tuple[str, str], tuple[int, str, float]] = {}
        by_rk: dict[str, list[str]] = {}
        for ev in events:
            by_rk.setdefault(ev.routing_key, []).append(ev.dedup_key)
        for rk, dks in by_rk.items():
            for chunk in _chunks(sorted(set(dks))):
                for seq, dk, action, lease in c.execute(
                        f"SELECT seq, dk, action, lease FROM outbox WHERE rk = ? AND dk IN "
                        f"({','.join('?' * len(chunk))})", (rk, *chunk)):
                    if (rk, dk) not in last or seq > last[(rk, dk)][0]:
                        last[(rk, dk)] = (seq, action, lease)
        twice = {k for k, n in Counter((ev.routing_key, ev.dedup_key) for ev in events).items() if n > 1}
        rows = []
        for ev in events:
            line = (ev.routing_key, ev.dedup_key)
            prev = last.get(line)
            if ev.action == "trigger" and prev and prev[1] == "trigger" and prev[2] <= ev.enqueued_at:
                c.execute("UPDATE outbox SET body = ?, severity = ?, prio = ? WHERE seq = ?",
                          (ev.body, ev.severity, ev.priority, prev[0]))
                continue
            head = 1 if prev is None else 0
            row = (ev.routing_key, ev.dedup_key, ev.action, ev.severity, ev.priority, ev.body,
                   ev.key_name, ev.attempts, ev.not_before, ev.enqueued_at, ev.last_error, head,
                   ev.not_before if head and ev.not_before > 0 else 0)
            if line in twice:  # a later event of this call may follow up on this row
                seq = c.execute(_INSERT_EVENT, row).lastrowid
                last[line] = (int(seq or 0), ev.action, 0.0)
            else:
                rows.append(row)
            self._count("depth", 1, ev.routing_key, ev.key_name)
        if rows:
            c.executemany(_INSERT_EVENT, rows)

    async def enqueue(self, events: Sequence[OutEvent]) -> None:
        if events:
            await self._do(lambda c: self._enqueue(c, events))

    async def outbox_keys(self) -> list[str]:
        return [rk for rk, n in self._depth.items() if n]

    async def take(self, routing_key: str, now: float, lease: float, window: Window) -> Take:
        if not self._depth.get(routing_key):
            return Take(None, math.inf)

        def run(c: sqlite3.Connection) -> Take:
            rk = routing_key
            paused = c.execute("SELECT until FROM pauses WHERE rk = ?", (rk,)).fetchone()
            if paused and paused[0] > now:
                return Take(None, paused[0] - now)
            c.execute("UPDATE outbox SET wait_until = 0, lease = 0 WHERE rk = ? AND head = 1 AND "
                      "wait_until > 0 AND wait_until <= ?", (rk, now))
            best = c.execute(f"SELECT {_EVENT_COLS}, prio FROM outbox WHERE rk = ? AND head = 1 AND "
                             "wait_until = 0 ORDER BY prio, seq LIMIT 1", (rk,)).fetchone()
            if best is None:
                nxt = c.execute("SELECT MIN(wait_until) FROM outbox WHERE rk = ? AND head = 1 AND "
                                "wait_until > 0", (rk,)).fetchone()[0]
                return Take(None, math.inf if nxt is None else max(0.001, nxt - now))
            wait = self._budget_wait(c, rk, best[-1], now, window)
            if wait:
                return Take(None, wait)
            stamp = c.execute("INSERT INTO stamps (rk, at) VALUES (?, ?)", (rk, now)).lastrowid
            assert stamp is not None
            c.execute("UPDATE outbox SET lease = ?, wait_until = ? WHERE seq = ?",
                      (now + lease, now + lease, best[0]))
            return Take(_event(best[:-1]), 0.0, stamp)

        return await self._do(run)

    @staticmethod
    def _budget_wait(c: sqlite3.Connection, rk: str, prio: int, now: float, window: Window) -> float:
        c.execute("DELETE FROM stamps WHERE rk = ? AND at <= ?", (rk, now - window.seconds))
        n = c.execute("SELECT COUNT(*) FROM stamps WHERE rk = ?", (rk,)).fetchone()[0]
        allowed = window.limit if prio == URGENT else window.limit - window.reserve
        if n < allowed:
            return 0.0
        (t,) = c.execute("SELECT at FROM stamps WHERE rk = ? ORDER BY at LIMIT 1 OFFSET ?",
                         (rk, n - allowed)).fetchone()
        return float(max(0.001, t + window.seconds - now))

    @staticmethod
    def _settle(c: sqlite3.Connection, stamp: int, now: float) -> None:
        if stamp:
            c.execute("UPDATE stamps SET at = MAX(at, ?) WHERE id = ?", (now, stamp))

    def _pop(self, c: sqlite3.Connection, ev: OutEvent, now: float) -> tuple[Any, ...] | None:
        """Take the event off its line; the next of the line becomes its head."""
        row = c.execute(f"SELECT {_EVENT_COLS} FROM outbox WHERE seq = ?", (ev.seq,)).fetchone()
        if row is None:
            return None
        c.execute("DELETE FROM outbox WHERE seq = ?", (ev.seq,))
        self._count("depth", -1, ev.routing_key)
        nxt = c.execute("SELECT seq, not_before FROM outbox WHERE rk = ? AND dk = ? ORDER BY seq "
                        "LIMIT 1", (ev.routing_key, ev.dedup_key)).fetchone()
        if nxt:
            c.execute("UPDATE outbox SET head = 1, wait_until = ? WHERE seq = ?",
                      (nxt[1] if nxt[1] > now else 0, nxt[0]))
        return tuple(row)

    async def done(self, ev: OutEvent, stamp: int, now: float) -> None:
        def run(c: sqlite3.Connection) -> None:
            self._pop(c, ev, now)
            self._settle(c, stamp, now)

        await self._do(run)

    async def retry(self, ev: OutEvent, stamp: int, not_before: float, error: str, count: bool,
                    now: float) -> None:
        def run(c: sqlite3.Connection) -> None:
            self._settle(c, stamp, now)
            c.execute("UPDATE outbox SET not_before = ?, last_error = ?, attempts = attempts + ?, "
                      "lease = 0, wait_until = CASE WHEN head = 1 THEN ? ELSE wait_until END "
                      "WHERE seq = ?", (not_before, error, int(count), max(0.0, not_before), ev.seq))

        await self._do(run)

    async def release(self, ev: OutEvent, stamp: int, now: float) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM stamps WHERE id = ?", (stamp,))
            c.execute("UPDATE outbox SET lease = 0, wait_until = CASE WHEN not_before > ? THEN "
                      "not_before ELSE 0 END WHERE seq = ?", (now, ev.seq))

        await self._do(run)

    async def dead(self, ev: OutEvent, stamp: int, error: str, now: float) -> None:
        def run(c: sqlite3.Connection) -> None:
            row = self._pop(c, ev, now)
            self._settle(c, stamp, now)
            if row is not None:
                seq, rk, dk, action, severity, body, name, attempts, _, enq, _ = row
                c.execute("INSERT INTO dead (seq, rk, dk, action, severity, body, key_name, attempts, "
                          "enqueued_at, last_error) VALUES (?,?,?,?,?,?,?,?,?,?)",
                          (seq, rk, dk, action, severity, body, name, attempts + 1, enq, error))
                self._count("dead", 1)

        await self._do(run)

    async def pending(self, limit: int = 1000) -> list[OutEvent]:
        return await self._do(lambda c: [_event(r) for r in c.execute(
            f"SELECT {_EVENT_COLS} FROM outbox ORDER BY seq LIMIT ?", (limit,))])

    async def dead_letters(self, limit: int = 1000) -> list[OutEvent]:
        return await self._do(lambda c: [_event((*r[:8], 0.0, *r[8:])) for r in c.execute(
            "SELECT seq, rk, dk, action, severity, body, key_name, attempts, enqueued_at, last_error "
            "FROM dead ORDER BY seq LIMIT ?", (limit,))])

    async def requeue_dead(self, seqs: Sequence[int] | None) -> int:
        chosen = [e for e in await self.dead_letters(limit=1 << 30) if seqs is None or e.seq in seqs]

        def run(c: sqlite3.Connection) -> int:
            n = 0
            for e in chosen:
                if c.execute("DELETE FROM dead WHERE seq = ?", (e.seq,)).rowcount:
                    self._count("dead", -1)
                    n += 1
                    e.attempts, e.not_before, e.last_error = 0, 0.0, ""
                    self._enqueue(c, [e])
            return n

        return await self._do(run) if chosen else 0

    # -- budget --------------------------------------------------------------------
    async def pause(self, routing_key: str, until: float) -> None:
        await self._do(lambda c: c.execute(
            "INSERT INTO pauses (rk, until) VALUES (?, ?) ON CONFLICT(rk) DO UPDATE SET "
            "until = MAX(until, excluded.until)", (routing_key, until)))

    async def sent_in_window(self, routing_key: str, now: float, window: Window) -> int:
        return int(await self._do(lambda c: c.execute(
            "SELECT COUNT(*) FROM stamps WHERE rk = ? AND at > ?",
            (routing_key, now - window.seconds)).fetchone()[0]))

    async def stats(self, now: float, window: Window) -> Stats:
        def run(c: sqlite3.Connection) -> Stats:
            keys: dict[str, KeyStats] = {}
            for rk, depth in list(self._depth.items()):
                sent = c.execute("SELECT COUNT(*) FROM stamps WHERE rk = ? AND at > ?",
                                 (rk, now - window.seconds)).fetchone()[0]
                if not depth and not sent:
                    continue
                oldest = c.execute("SELECT MIN(enqueued_at) FROM outbox WHERE rk = ?", (rk,)).fetchone()[0]
                keys[self._names.get(rk, "?")] = KeyStats(depth, oldest if oldest is not None else now, sent)
            dues = [d for (d,) in c.execute("SELECT MIN(due) FROM groups WHERE urgent = 1 UNION ALL "
                                            "SELECT MIN(due) FROM groups WHERE urgent = 0") if d is not None]
            return Stats(groups_open=self._n_groups, dead=self._n_dead, keys=keys,
                         oldest_due=min(dues) if dues else None)

        return await self._do(run)

    async def add_counts(self, hour: int, counts: dict[str, float]) -> None:
        def run(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM counts WHERE hour <= ?", (hour - COUNT_HOURS,))
            have = {f for (f,) in c.execute("SELECT field FROM counts WHERE hour = ?", (hour,))}
            c.executemany("INSERT INTO counts (hour, field, n) VALUES (?, ?, ?) ON CONFLICT(hour, field) "
                          "DO UPDATE SET n = n + excluded.n",
                          [(hour, f, v) for f, v in capped(have, counts).items()])

        if counts:
            await self._do(run)

    async def counts(self, since_hour: int) -> dict[int, dict[str, float]]:
        def run(c: sqlite3.Connection) -> dict[int, dict[str, float]]:
            out: dict[int, dict[str, float]] = {}
            for hour, field, n in c.execute("SELECT hour, field, n FROM counts WHERE hour >= ?",
                                            (since_hour,)):
                out.setdefault(hour, {})[field] = n
            return out

        return await self._do(run)

    async def first_time(self, key: str, now: float, ttl: float) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            c.execute("DELETE FROM seen WHERE until <= ?", (now,))
            return c.execute("INSERT OR IGNORE INTO seen (key, until) VALUES (?, ?)",
                             (key, now + ttl)).rowcount == 1

        return await self._do(run)

    async def ping(self) -> None:
        self._start()
        await asyncio.wrap_future(self._opened)
        await self._do(lambda c: c.execute("SELECT 1").fetchone())

    async def footprint(self) -> dict[str, int]:
        def run(c: sqlite3.Connection) -> dict[str, int]:
            def n(q: str) -> int:
                return int(c.execute(q).fetchone()[0])

            return {"groups": n("SELECT COUNT(*) FROM groups"),
                    "fingerprints": n("SELECT COUNT(DISTINCT fp) FROM alerts"),
                    "tombstones": n("SELECT COUNT(*) FROM tombs"),
                    "events": n("SELECT COUNT(*) FROM outbox"),
                    "lines": n("SELECT COUNT(*) FROM (SELECT DISTINCT rk, dk FROM outbox)"),
                    "dead": n("SELECT COUNT(*) FROM dead"),
                    "marks": n("SELECT COUNT(DISTINCT mark) FROM marks"),
                    "seen": n("SELECT COUNT(*) FROM seen"),
                    "budgets": n("SELECT COUNT(DISTINCT rk) FROM stamps")}

        return await self._do(run)

    async def close(self) -> None:
        if self._thread is None:
            return
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join, 10)
        self._thread = None
