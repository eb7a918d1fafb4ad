"""The embedded durable store: one SQLite file (standard library `sqlite3`, WAL), written
by one process of the proxy's own. `sqlite:///var/lib/alert-proxy/state.db` (absolute) or
`sqlite://.state/state.db` (relative); `?synchronous=normal` trades power-loss safety for
speed.

Durability: a request is answered 2xx only after its transaction committed. With
synchronous=FULL (the default) the WAL is synced at every commit: nothing answered 2xx is
lost to kill -9 or to a power loss. With synchronous=NORMAL it survives kill -9 (the WAL is
in the OS's cache) but a power loss may undo the last commits.

The store runs in a child process (`_Engine`, started at the first call), so that SQLite
and the event loop do not share one GIL: in a thread, the sqlite3 module gives up the GIL
at every row and waits for it back, and a flush ran at the speed of the two threads' work
added up. The event loop never waits on SQLite: every call is a frame (pickled plain
data: rows, tuples, the model's dataclasses) on the child's stdin, answered in order on
its stdout. The child runs all the calls waiting in one transaction (group commit: one
sync for many requests), each in a savepoint of its own so one that fails does not undo
the others. Orders use indexes (due groups, line heads by priority, budget stamps by
time); the gauges' counts are kept by the child (the file's only writer) and mirrored
here with each answer, so no step reads the whole backlog.

The child ignores SIGINT and SIGTERM (the proxy's shutdown decides when the store
closes) and ends when its stdin does: at close(), or when the proxy dies. If it dies, the
calls under way fail (StoreError) and the next call starts a new one; the groups it had
leased are due again, as after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import math
import os
import pickle
import queue
import select
import signal
import sqlite3
import struct
import subprocess
import sys
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import orjson

from proxy.errors import ConfigError, StoreError, StoreFull, UsageError
from proxy.model import URGENT, Group, GroupAlert, OutEvent
from proxy.state import GroupState
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
from proxy.store.codec import join_status, split_status

__all__ = ["SqliteStore"]

T = TypeVar("T")
_Job = tuple[str, tuple[Any, ...], bool]  # the call (_Engine.op_<name>), its arguments, durable
_Answer = tuple[bool, Any, list[tuple[str, str, int]]]  # ok, its value (or error), count changes
_FRAME = struct.Struct(">I")  # a frame: its length, then pickled data
_BATCH = 256  # jobs per transaction at most
_OUTBOX = """CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, rk TEXT NOT NULL, dk TEXT NOT NULL, action TEXT NOT NULL,
  severity TEXT NOT NULL, prio INTEGER NOT NULL, body BLOB NOT NULL, key_name TEXT NOT NULL,
  attempts INTEGER NOT NULL, not_before REAL NOT NULL, enqueued_at REAL NOT NULL,
  last_error TEXT NOT NULL, lease REAL NOT NULL, head INTEGER NOT NULL, wait_until REAL NOT NULL)"""
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
{outbox};
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
""".replace("{outbox}", _OUTBOX)
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


def file_of(url: str) -> Path:
    """The file a sqlite:// URL names."""
    return _path(url)[0]


def check_file(url: str) -> None:
    """Open (or make) the file a sqlite:// URL names, as the store's process will: a file
    that cannot be opened is an error now (UsageError: exit 2), not a retry twice a second
    forever."""
    path = file_of(url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        conn = sqlite3.connect(path)
        try:
            if fresh:
                os.chmod(path, 0o600)  # it holds routing keys
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as e:
        raise UsageError([f"--store {url}: {path} cannot be opened: {e}"]) from None


def _number_once(conn: sqlite3.Connection) -> None:
    """Sequence numbers are never given twice (a dead letter keeps its number, and so would
    a later event that got it again). Files written before AUTOINCREMENT gave the number of
    the newest event again once it was sent: their outbox is copied into the new table, and
    the sequence goes on from the highest number any event or dead letter ever had."""
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'outbox'").fetchone()
    if row is None:
        return  # a new file: the schema makes it
    conn.execute("BEGIN IMMEDIATE")
    try:
        if "AUTOINCREMENT" not in row[0].upper():
            conn.execute("ALTER TABLE outbox RENAME TO outbox_before_autoincrement")
            conn.execute(_OUTBOX)
            conn.execute("INSERT INTO outbox SELECT * FROM outbox_before_autoincrement")
            conn.execute("DROP TABLE outbox_before_autoincrement")
        top = conn.execute("SELECT MAX(s) FROM (SELECT MAX(seq) AS s FROM outbox UNION ALL "
                           "SELECT MAX(seq) FROM dead)").fetchone()[0] or 0
        if conn.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'outbox'",
                        (top,)).rowcount == 0 and top:
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', ?)", (top,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _event(row: Sequence[Any]) -> OutEvent:
    seq, rk, dk, action, severity, body, key_name, attempts, not_before, enq, err = row
    return OutEvent(routing_key=rk, dedup_key=dk, action=action, severity=severity, body=bytes(body),
                    key_name=key_name, seq=seq, attempts=attempts, not_before=not_before,
                    enqueued_at=enq, last_error=err)


def _chunks(items: Sequence[T], n: int = 400) -> Iterable[Sequence[T]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _event_row(ev: OutEvent) -> tuple[Any, ...]:
    return (ev.routing_key, ev.dedup_key, ev.action, ev.severity, ev.body, ev.key_name, ev.seq,
            ev.attempts, ev.not_before, ev.enqueued_at, ev.last_error)


def _frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=5)
    return _FRAME.pack(len(data)) + data


class _Inbox:
    """The child's jobs, read from its stdin by the thread that runs them: between two
    batches it parses the frames the pipe already holds, and it waits on the pipe only
    when no whole frame is left. (A thread of its own that read them took the GIL from the
    engine at every frame, and its frames waited up to ~2 ms for the GIL in turn:
    bench/RESULTS.md, seventh pass.) `get` and `get_nowait` as a queue.SimpleQueue's; None
    once the stream has ended, or at a frame that is not a job's."""

    _NOTHING: Any = object()  # no whole frame yet

    def __init__(self, fd: int) -> None:
        self.fd = fd
        os.set_blocking(fd, False)
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        self.buf = bytearray()
        self.pos = 0  # where the next frame starts
        self.ended = False

    def get(self) -> _Job | None:
        while True:
            try:
                return self.get_nowait()
            except queue.Empty:
                self._poll.poll()  # readable, or the other end closed

    def get_nowait(self) -> _Job | None:
        job = self._next()
        if job is self._NOTHING and not self.ended:
            self._read()
            job = self._next()
        if job is self._NOTHING:
            if self.ended:
                return None
            raise queue.Empty
        return job  # type: ignore[no-any-return]

    def _read(self) -> None:
        try:
            data = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.ended = True
            return
        if self.pos:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += data

    def _next(self) -> Any:
        start = self.pos + _FRAME.size
        if len(self.buf) < start:
            return self._NOTHING
        (n,) = _FRAME.unpack_from(self.buf, self.pos)
        if len(self.buf) < start + n:
            return self._NOTHING
        self.pos = start + n
        try:
            with memoryview(self.buf) as view, view[start:start + n] as data:
                return pickle.loads(data)
        except Exception:  # noqa: BLE001 - not a frame of ours: the stream is over
            self.ended, self.buf, self.pos = True, bytearray(), 0
            return None


def _error(e: BaseException) -> tuple[str, str]:
    """An error as the child sends it: its kind and its text."""
    if isinstance(e, sqlite3.Error):
        return "StoreError", f"sqlite: {type(e).__name__}: {e}"
    return type(e).__name__, str(e)


def _revive(kind: str, text: str) -> Exception:
    """The error a call raises here for one the child sent."""
    if kind == "StoreFull":
        e: StoreError = StoreFull.__new__(StoreFull)
        Exception.__init__(e, text)  # the child's text (StoreFull() would write its own)
        return e
    return StoreError(text if kind == "StoreError" else f"sqlite: {kind}: {text}")


def _group_row(row: Sequence[Any]) -> Group:
    (key, rule, rk, name, labels, gi, rw, opened, due, urgent, trig, grown, ltr, lfl,
     overflow, version, seen, n_alerts, state) = row
    return Group(key=key, rule=rule, routing_key=rk, key_name=name,
                 group_labels=orjson.loads(labels), group_interval=gi, resolve_wait=rw,
                 opened_at=opened, due=due, triggered=bool(trig), grown=bool(grown),
                 last_trigger_at=ltr, last_flush_at=lfl, overflow=overflow, version=version,
                 last_seen=seen, urgent=bool(urgent), state=GroupState.from_json(state),
                 n_alerts=n_alerts)


_Rows = tuple[list[Sequence[Any]], list[Sequence[Any]]]  # groups' rows (in order), their alerts' rows


def _groups(rows: _Rows) -> list[Group]:
    """Groups from what `_Engine._load` read (built here: the child only reads rows)."""
    group_rows, alert_rows = rows
    groups = [_group_row(row) for row in group_rows]
    by_key = {g.key: g for g in groups}
    for gkey, fp, raw, js in alert_rows:
        status, changes = split_status(raw)
        by_key[gkey].alerts[fp] = GroupAlert.from_json(js, status, changes)
    return groups


@dataclasses.dataclass(slots=True)
class _Counts:
    """What the gauges and the sender read without a query: kept by the child (the
    file's only writer) as its transactions commit, mirrored in the proxy from the
    changes each answer carries."""

    groups: int = 0
    dead: int = 0
    depth: dict[str, int] = dataclasses.field(default_factory=dict)  # routing key -> events queued
    names: dict[str, str] = dataclasses.field(default_factory=dict)  # routing key -> its name

    def apply(self, what: str, rk: str, n: int) -> None:
        if what == "groups":
            self.groups += n
        elif what == "dead":
            self.dead += n
        elif what == "depth":
            self.depth[rk] = self.depth.get(rk, 0) + n
        else:
            self.names[rk] = what[len("name:"):]

    def as_changes(self) -> list[tuple[str, str, int]]:
        """The counts as changes from nothing (the proxy's mirror starts from them)."""
        return [("groups", "", self.groups), ("dead", "", self.dead),
                *(("name:" + self.names.get(rk, "?"), rk, 0) for rk in self.depth),
                *(("depth", rk, n) for rk, n in self.depth.items())]


class _Engine:
    """The child process's side: the connection, its transactions and every call's SQL.
    Its calls take and give plain data (see `_Job`)."""

    def __init__(self, path: Path, sync: str) -> None:
        self.path, self._sync = path, sync
        self._synced = sync  # the connection's synchronous level now
        self.counts = _Counts()
        self._deltas: list[tuple[str, str, int]] = []  # this job's count changes, kept if it commits
        self._leased: dict[str, float] = {}  # group key -> lease end (op_claim_due)

    def open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        if fresh:
            os.chmod(self.path, 0o600)  # it holds routing keys
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._sync}")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA cache_size=-65536")
        # Each job runs in a savepoint; a page that an earlier job of the same transaction
        # changed is copied to the savepoint's journal first, which past 64 KB went to a
        # temporary file: 1.5 KB written per group when a busy flush puts many commits in
        # one transaction (bench/RESULTS.md). In memory it stays at a few MB at most.
        conn.execute("PRAGMA temp_store=MEMORY")
        _number_once(conn)
        conn.executescript(_SCHEMA)
        counts = self.counts
        counts.groups = conn.execute("SELECT COUNT(*) FROM groups").fetchone()[0]
        counts.dead = conn.execute("SELECT COUNT(*) FROM dead").fetchone()[0]
        for rk, name, n in conn.execute("SELECT rk, key_name, COUNT(*) FROM outbox GROUP BY rk"):
            counts.depth[rk], counts.names[rk] = n, name
        return conn

    def serve(self, conn: sqlite3.Connection, jobs: _Inbox, out: Any) -> None:
        """Run the jobs as they come, each batch in one transaction, and answer each batch
        in one frame; return at the end of the jobs (or when no one reads the answers)."""
        while True:
            first = jobs.get()
            if first is None:
                return
            batch = [first]
            end = False
            while len(batch) < _BATCH:
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    end = True
                    break
                batch.append(job)
            answers = self._run_batch(conn, batch)
            try:
                out.write(_frame(answers))
                out.flush()
            except OSError:  # the proxy is gone
                return
            if end:
                return

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> list[_Answer]:
        answers: list[_Answer] = []
        try:
            sync = self._sync if any(durable for _, _, durable in batch) else "NORMAL"
            if sync != self._synced:  # WAL: a later synced commit syncs this one's frames too
                conn.execute(f"PRAGMA synchronous={sync}")
                self._synced = sync
            conn.execute("BEGIN IMMEDIATE")
            for op, args, _ in batch:
                self._deltas = []
                conn.execute("SAVEPOINT job")
                try:
                    answers.append((True, getattr(self, "op_" + op)(conn, *args), self._deltas))
                    conn.execute("RELEASE job")
                except Exception as e:  # noqa: BLE001 - any failure is this job's alone: undone, told to its caller
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    answers.append((False, _error(e), []))
            conn.execute("COMMIT")
            for ok, _, deltas in answers:
                for what, rk, n in deltas if ok else ():
                    self.counts.apply(what, rk, n)
        except sqlite3.Error as e:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            answers = [(False, _error(e), [])] * len(batch)
        return answers

    def _count(self, what: str, n: int, rk: str = "", name: str = "") -> None:
        """A change of the counts, applied once the job's transaction commits."""
        self._deltas.append((what, rk, n))
        if name:
            self._deltas.append(("name:" + name, rk, 0))

    # -- windows -------------------------------------------------------------------
    def op_record(self, c: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], resolved: Sequence[Resolved],
                  now: float, marks: Sequence[tuple[str, str]], max_groups: int) -> int:
        """A whole request in a fixed number of statements, whatever its number of groups."""
        entries = [Entry(*row) for row in rows]
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
        if new and self.counts.groups + len(new) > max_groups:
            raise StoreFull(max_groups)
        if new:
            c.executemany(f"INSERT INTO groups ({_GROUP_COLS}) VALUES "
                          "(?,?,?,?,?,?,?,?,?,?,0,0,0,0,0,0,?,0,'{}')",
                          [(e.group_key, e.meta.rule, e.meta.routing_key, e.meta.key_name,
                            orjson.dumps(e.meta.group_labels).decode(), e.group_interval,
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

    def op_marked(self, c: sqlite3.Connection, marks: Sequence[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {m: set() for m in marks}
        for chunk in _chunks(list(marks)):
            q = f"SELECT mark, fp FROM marks WHERE mark IN ({','.join('?' * len(chunk))})"
            for m, fp in c.execute(q, chunk):
                out[m].add(fp)
        return out

    def op_claim_due(self, c: sqlite3.Connection, now: float, lease: float, limit: int) -> _Rows:
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
        rows = self._load(c, keys)
        for row in rows[0]:
            leased[row[0]] = now + lease
        return rows

    @staticmethod
    def _load(c: sqlite3.Connection, keys: Sequence[str]) -> _Rows:
        found: dict[str, Sequence[Any]] = {}
        alert_rows: list[Sequence[Any]] = []
        for chunk in _chunks(list(keys)):
            marks = ",".join("?" * len(chunk))
            for row in c.execute(f"SELECT {_GROUP_COLS} FROM groups WHERE key IN ({marks})", chunk):
                found[row[0]] = row
            alert_rows += c.execute(f"SELECT gkey, fp, status, json FROM alerts WHERE gkey IN ({marks})",
                                    chunk).fetchall()
        return [found[k] for k in keys if k in found], alert_rows

    def op_load(self, c: sqlite3.Connection, keys: Sequence[str]) -> _Rows:
        return self._load(c, keys)

    def op_commit(self, c: sqlite3.Connection, commits: Sequence[tuple[Any, ...]]) -> list[bool]:
        """`commits`: (key, version, delete, tomb until, new state row, event rows) each."""
        version: dict[str, int] = {}
        for chunk in _chunks([cm[0] for cm in commits]):
            version.update(c.execute(f"SELECT key, version FROM groups WHERE key IN "
                                     f"({','.join('?' * len(chunk))})", chunk))
        out = [version.get(cm[0]) == cm[1] for cm in commits]
        for cm in commits:
            self._leased.pop(cm[0], None)
        done = [cm for cm, ok in zip(commits, out, strict=True) if ok]
        gone = [(cm[0],) for cm in done if cm[2]]
        if gone:
            c.executemany("DELETE FROM alerts WHERE gkey = ?", gone)
            c.executemany("DELETE FROM groups WHERE key = ?", gone)
            c.executemany("INSERT OR REPLACE INTO tombs (key, until) VALUES (?, ?)",
                          [(cm[0], cm[3]) for cm in done if cm[2]])
            self._count("groups", -len(gone))
        c.executemany("UPDATE groups SET due = ?, triggered = ?, grown = ?, last_trigger_at = ?, "
                      "last_flush_at = ?, state = ?, version = version + 1 WHERE key = ?",
                      [cm[4] for cm in done if not cm[2]])
        self._enqueue(c, [OutEvent(*row) for cm in done for row in cm[5]])
        return out

    def op_groups(self, c: sqlite3.Connection) -> _Rows:
        return self._load(c, [k for (k,) in c.execute("SELECT key FROM groups ORDER BY opened_at")])

    def op_heads(self, c: sqlite3.Connection) -> list[Sequence[Any]]:
        return c.execute(f"SELECT {_GROUP_COLS} FROM groups").fetchall()

    def op_groups_of(self, c: sqlite3.Connection, fingerprint: str) -> _Rows:
        return self._load(c, [k for (k,) in c.execute(
            "SELECT gkey FROM alerts WHERE fp = ? ORDER BY gkey", (fingerprint,))])

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

    def op_enqueue(self, c: sqlite3.Connection, events: Sequence[OutEvent]) -> None:
        self._enqueue(c, events)

    def op_take(self, c: sqlite3.Connection, rk: str, now: float, lease: float, window: Window) -> Take:
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

    def op_done(self, c: sqlite3.Connection, ev: OutEvent, stamp: int, now: float) -> None:
        self._pop(c, ev, now)
        self._settle(c, stamp, now)

    def op_retry(self, c: sqlite3.Connection, ev: OutEvent, stamp: int, not_before: float, error: str,
                 count: bool, now: float) -> None:
        self._settle(c, stamp, now)
        c.execute("UPDATE outbox SET not_before = ?, last_error = ?, attempts = attempts + ?, "
                  "lease = 0, wait_until = CASE WHEN head = 1 THEN ? ELSE wait_until END "
                  "WHERE seq = ?", (not_before, error, int(count), max(0.0, not_before), ev.seq))

    def op_release(self, c: sqlite3.Connection, ev: OutEvent, stamp: int, now: float) -> None:
        c.execute("DELETE FROM stamps WHERE id = ?", (stamp,))
        c.execute("UPDATE outbox SET lease = 0, wait_until = CASE WHEN not_before > ? THEN "
                  "not_before ELSE 0 END WHERE seq = ?", (now, ev.seq))

    def op_dead(self, c: sqlite3.Connection, ev: OutEvent, stamp: int, error: str, now: float) -> None:
        row = self._pop(c, ev, now)
        self._settle(c, stamp, now)
        if row is not None:
            seq, rk, dk, action, severity, body, name, attempts, _, enq, _ = row
            c.execute("INSERT INTO dead (seq, rk, dk, action, severity, body, key_name, attempts, "
                      "enqueued_at, last_error) VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (seq, rk, dk, action, severity, body, name, attempts + 1, enq, error))
            self._count("dead", 1)

    def op_pending(self, c: sqlite3.Connection, limit: int) -> list[OutEvent]:
        return [_event(r) for r in c.execute(f"SELECT {_EVENT_COLS} FROM outbox ORDER BY seq LIMIT ?",
                                             (limit,))]

    def op_dead_letters(self, c: sqlite3.Connection, limit: int) -> list[OutEvent]:
        return [_event((*r[:8], 0.0, *r[8:])) for r in c.execute(
            "SELECT seq, rk, dk, action, severity, body, key_name, attempts, enqueued_at, last_error "
            "FROM dead ORDER BY seq LIMIT ?", (limit,))]

    def op_requeue_dead(self, c: sqlite3.Connection, seqs: Sequence[int] | None) -> int:
        n = 0
        for e in self.op_dead_letters(c, 1 << 62):
            if seqs is not None and e.seq not in seqs:
                continue
            c.execute("DELETE FROM dead WHERE seq = ?", (e.seq,))
            self._count("dead", -1)
            n += 1
            e.attempts, e.not_before, e.last_error = 0, 0.0, ""
            self._enqueue(c, [e])
        return n

    # -- budget --------------------------------------------------------------------
    def op_pause(self, c: sqlite3.Connection, rk: str, until: float) -> None:
        c.execute("INSERT INTO pauses (rk, until) VALUES (?, ?) ON CONFLICT(rk) DO UPDATE SET "
                  "until = MAX(until, excluded.until)", (rk, until))

    def op_sent_in_window(self, c: sqlite3.Connection, rk: str, now: float, window: Window) -> int:
        return int(c.execute("SELECT COUNT(*) FROM stamps WHERE rk = ? AND at > ?",
                             (rk, now - window.seconds)).fetchone()[0])

    def op_stats(self, c: sqlite3.Connection, now: float, window: Window) -> Stats:
        keys: dict[str, KeyStats] = {}
        for rk, depth in list(self.counts.depth.items()):
            sent = c.execute("SELECT COUNT(*) FROM stamps WHERE rk = ? AND at > ?",
                             (rk, now - window.seconds)).fetchone()[0]
            if not depth and not sent:
                continue
            oldest = c.execute("SELECT MIN(enqueued_at) FROM outbox WHERE rk = ?", (rk,)).fetchone()[0]
            keys[self.counts.names.get(rk, "?")] = KeyStats(depth, oldest if oldest is not None else now, sent)
        dues = [d for (d,) in c.execute("SELECT MIN(due) FROM groups WHERE urgent = 1 UNION ALL "
                                        "SELECT MIN(due) FROM groups WHERE urgent = 0") if d is not None]
        return Stats(groups_open=self.counts.groups, dead=self.counts.dead, keys=keys,
                     oldest_due=min(dues) if dues else None)


    def op_add_counts(self, c: sqlite3.Connection, hour: int, counts: dict[str, float]) -> None:
        c.execute("DELETE FROM counts WHERE hour <= ?", (hour - COUNT_HOURS,))
        have = {f for (f,) in c.execute("SELECT field FROM counts WHERE hour = ?", (hour,))}
        c.executemany("INSERT INTO counts (hour, field, n) VALUES (?, ?, ?) ON CONFLICT(hour, field) "
                      "DO UPDATE SET n = n + excluded.n",
                      [(hour, f, v) for f, v in capped(have, counts).items()])


    def op_counts(self, c: sqlite3.Connection, since_hour: int) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for hour, field, n in c.execute("SELECT hour, field, n FROM counts WHERE hour >= ?",
                                        (since_hour,)):
            out.setdefault(hour, {})[field] = n
        return out


    def op_first_time(self, c: sqlite3.Connection, key: str, now: float, ttl: float) -> bool:
        c.execute("DELETE FROM seen WHERE until <= ?", (now,))
        return c.execute("INSERT OR IGNORE INTO seen (key, until) VALUES (?, ?)",
                         (key, now + ttl)).rowcount == 1


    def op_ping(self, c: sqlite3.Connection) -> None:
        c.execute("SELECT 1").fetchone()

    def op_footprint(self, c: sqlite3.Connection) -> dict[str, int]:
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


def child_main() -> None:
    """The store's process: `python -c '...child_main()' PATH SYNC`, frames in on stdin and
    out on stdout (which nothing else may write to: fd 1 is pointed at stderr)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    engine = _Engine(Path(sys.argv[1]), sys.argv[2])
    try:
        conn = engine.open()
    except (sqlite3.Error, OSError) as e:
        out.write(_frame(("error", f"sqlite: {engine.path}: {e}")))
        out.flush()
        return
    out.write(_frame(("ready", engine.counts.as_changes())))
    out.flush()
    try:
        engine.serve(conn, _Inbox(os.dup(0)), out)
    finally:
        conn.close()


class _Child:
    """The parent's handle on one store process, driven by the event loop it was started
    in: each call's frame is written at once (what the pipe does not take waits for it to
    be writable), and the answers are read as they come, in the calls' order."""

    def __init__(self, path: Path, sync: str, mirror: _Counts, loop: asyncio.AbstractEventLoop) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # where `proxy` is imported from
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from proxy.store.sqlite import child_main; child_main()",
             str(path), sync], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd_in, self.fd_out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        for fd in (self.fd_in, self.fd_out):
            os.set_blocking(fd, False)
            with contextlib.suppress(OSError, AttributeError):  # Linux: a batch's frame in one write
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
        self.mirror, self.loop = mirror, loop
        self.pending: deque[asyncio.Future[Any]] = deque()
        self.unsent = bytearray()  # frames the pipe has not taken yet
        self.received = bytearray()  # the start of an answer not read whole yet
        self.started = False  # its first frame ("ready" or "error") has come
        self.ended = ""  # why it is gone: the error of any later call
        self.gone: asyncio.Future[None] = loop.create_future()
        self.born = loop.time()
        loop.add_reader(self.fd_out, self._read)

    def call(self, op: str, args: tuple[Any, ...], durable: bool) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.loop.create_future()
        if self.ended:
            fut.set_exception(StoreError(self.ended))
            return fut
        self.pending.append(fut)
        frame = _frame((op, args, durable))
        if self.unsent:
            self.unsent += frame
            return fut
        try:
            n = os.write(self.fd_in, frame)
        except BlockingIOError:
            n = 0
        except OSError:  # it is gone: the end of its stdout tells the callers
            return fut
        if n < len(frame):
            self.unsent += frame[n:]
            self.loop.add_writer(self.fd_in, self._write)
        return fut

    def _write(self) -> None:
        try:
            n = os.write(self.fd_in, self.unsent)
        except BlockingIOError:
            return
        except OSError:
            n = len(self.unsent)
        del self.unsent[:n]
        if not self.unsent:
            self.loop.remove_writer(self.fd_in)

    def _read(self) -> None:
        try:
            data = os.read(self.fd_out, 1 << 20)
        except BlockingIOError:
            return
        except OSError as e:
            self._end(f"sqlite: reading the store's process: {e}")
            return
        if not data:
            self._end("")
            return
        buf = self.received
        buf += data
        size = _FRAME.size
        while len(buf) >= size:
            (n,) = _FRAME.unpack_from(buf)
            if len(buf) < size + n:
                break
            msg = pickle.loads(memoryview(buf)[size:size + n])
            del buf[:size + n]
            if self.started:
                self._settle(msg)
            elif msg[0] == "error":
                self._end(msg[1])
                return
            else:
                self.started = True
                for what, rk, n_ in msg[1]:
                    self.mirror.apply(what, rk, n_)

    def _settle(self, answers: list[_Answer]) -> None:
        for ok, value, deltas in answers:
            for what, rk, n in deltas:
                self.mirror.apply(what, rk, n)
            fut = self.pending.popleft()
            if fut.cancelled():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(_revive(*value))

    def _end(self, why: str) -> None:
        if self.ended:
            return
        self.loop.remove_reader(self.fd_out)
        if self.unsent:
            self.loop.remove_writer(self.fd_in)
            self.unsent.clear()
        status = self.proc.poll()
        if status is None:  # its stdout ends as it exits: reaped once it has
            self.loop.run_in_executor(None, self.proc.wait)
        self.ended = why or "sqlite: the store's process ended" + (
            f" (exit status {status})" if status is not None else "")
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(StoreError(self.ended))
        self.gone.set_result(None)

    async def close(self, timeout: float) -> None:
        """End the process once it has answered every call (its stdin ends)."""
        deadline = self.loop.time() + timeout
        while self.unsent and not self.ended and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self.unsent:
            self.loop.remove_writer(self.fd_in)
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # (its buffer is empty: frames are written to its fd)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.gone), max(0.0, deadline - self.loop.time()))
        if self.proc.poll() is None:
            try:
                await asyncio.to_thread(self.proc.wait, max(0.1, deadline - self.loop.time()))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait)
        self._end("sqlite: the store is closed")
        assert self.proc.stdout is not None
        self.proc.stdout.close()


class SqliteStore:
    """The store's interface (store.base.Store), in the proxy's process; the work is done
    by `_Engine` in the store's process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path, self._sync = _path(url)
        self._child: _Child | None = None
        self._counts = _Counts()  # the child's, mirrored from its answers

    async def _do(self, op: str, *args: Any, durable: bool = True) -> Any:
        """`_Engine.op_<op>(conn, *args)` in the store's process, in a transaction; its
        result once committed (`durable`: synced to the disk, at the URL's level; else
        perhaps not yet)."""
        child = self._child
        loop = asyncio.get_running_loop()
        if child is not None and child.ended and not child.started and loop.time() < child.born + 1.0:
            raise StoreError(child.ended)  # it could not open the file: once a second at most
        if child is None or child.ended or child.loop is not loop:
            if child is not None and not child.ended:  # started by another event loop: it ends
                with contextlib.suppress(OSError, AttributeError):  # once it has run what it was sent
                    child.proc.stdin.close()  # type: ignore[union-attr]
            self._counts = _Counts()  # the new child's come with its first frame
            child = self._child = _Child(self.path, self._sync, self._counts, loop)
        return await child.call(op, args, durable)

    # -- windows -------------------------------------------------------------------
    async def record(self, entries: Sequence[Entry], resolved: Sequence[Resolved], now: float,
                     marks: Sequence[tuple[str, str]] = (), max_groups: int = 1 << 62) -> int:
        if not entries and not resolved and not marks:
            return 0
        rows = [(e.group_key, e.meta, e.fingerprint, e.alert_json, e.group_wait, e.group_interval,
                 e.resolve_wait, e.max_alerts, e.urgent) for e in entries]  # (pickled 5x faster)
        return int(await self._do("record", rows, list(resolved), now, list(marks), max_groups))

    async def marked(self, marks: Sequence[str]) -> dict[str, set[str]]:
        return dict(await self._do("marked", list(marks)))

    async def claim_due(self, now: float, lease: float, limit: int) -> list[Group]:
        """The leases live in the store's process (the file has one writer): a claim
        writes nothing, and a group whose flusher died is due again at the restart."""
        groups = _groups(await self._do("claim_due", now, lease, limit, durable=False))  # it writes nothing
        for g in groups:
            g.due = now + lease
        return groups

    async def load(self, key: str) -> Group | None:
        found = _groups(await self._do("load", [key]))
        return found[0] if found else None

    async def commit(self, commits: Sequence[Commit], durable: bool = True) -> list[bool]:
        if not commits:
            return []
        rows = []
        for cm in commits:
            g = cm.group
            rows.append((g.key, g.version, cm.delete, g.last_flush_at + TOMBSTONE_TTL,
                         None if cm.delete else (g.due, int(g.triggered), int(g.grown), g.last_trigger_at,
                                                 g.last_flush_at, g.state.to_json(), g.key),
                         [_event_row(ev) for ev in cm.events]))
        return list(await self._do("commit", rows, durable=durable))

    async def groups(self) -> list[Group]:
        return _groups(await self._do("groups"))

    async def heads(self) -> list[Group]:
        return [_group_row(row) for row in await self._do("heads")]

    async def load_many(self, keys: Sequence[str]) -> list[Group]:
        return _groups(await self._do("load", list(keys)))

    async def groups_of(self, fingerprint: str) -> list[Group]:
        return _groups(await self._do("groups_of", fingerprint))

    # -- outbox --------------------------------------------------------------------
    async def enqueue(self, events: Sequence[OutEvent]) -> None:
        if events:
            await self._do("enqueue", list(events))

    async def outbox_keys(self) -> list[str]:
        return [rk for rk, n in list(self._counts.depth.items()) if n]

    async def take(self, routing_key: str, now: float, lease: float, window: Window) -> Take:
        if not self._counts.depth.get(routing_key):
            return Take(None, math.inf)
        take: Take = await self._do("take", routing_key, now, lease, window)
        return take

    async def done(self, ev: OutEvent, stamp: int, now: float) -> None:
        await self._do("done", ev, stamp, now)

    async def retry(self, ev: OutEvent, stamp: int, not_before: float, error: str, count: bool,
                    now: float) -> None:
        await self._do("retry", ev, stamp, not_before, error, count, now)

    async def release(self, ev: OutEvent, stamp: int, now: float) -> None:
        await self._do("release", ev, stamp, now)

    async def dead(self, ev: OutEvent, stamp: int, error: str, now: float) -> None:
        await self._do("dead", ev, stamp, error, now)

    async def pending(self, limit: int = 1000) -> list[OutEvent]:
        return list(await self._do("pending", limit))

    async def dead_letters(self, limit: int = 1000) -> list[OutEvent]:
        return list(await self._do("dead_letters", limit))

    async def requeue_dead(self, seqs: Sequence[int] | None) -> int:
        return int(await self._do("requeue_dead", None if seqs is None else set(seqs)))

    # -- budget --------------------------------------------------------------------
    async def pause(self, routing_key: str, until: float) -> None:
        await self._do("pause", routing_key, until)

    async def sent_in_window(self, routing_key: str, now: float, window: Window) -> int:
        return int(await self._do("sent_in_window", routing_key, now, window))

    async def stats(self, now: float, window: Window) -> Stats:
        stats: Stats = await self._do("stats", now, window)
        return stats

    async def add_counts(self, hour: int, counts: dict[str, float]) -> None:
        if counts:
            await self._do("add_counts", hour, counts)

    async def counts(self, since_hour: int) -> dict[int, dict[str, float]]:
        return dict(await self._do("counts", since_hour))

    async def first_time(self, key: str, now: float, ttl: float) -> bool:
        return bool(await self._do("first_time", key, now, ttl))

    async def ping(self) -> None:
        await self._do("ping")

    async def footprint(self) -> dict[str, int]:
        return dict(await self._do("footprint"))

    async def close(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            await child.close(10)
