"""The SQLite store's engine: synchronous and typed, with no I/O but its file. A unit test
drives it in-process (tests/unit/test_sqlite_engine.py); in the proxy it runs in the
store's own process (transport.py), one batch of operations per transaction.

    engine = Engine.open(path, "FULL")
    answers = engine.run([(Engine.record, (entries, resolved, now, (), 1 << 62), True), ...])

An operation is one of Engine's methods (its windows in windows.py, its outbox in
outbox.py, the rest here); each runs in a savepoint of its own, so one that fails is
undone alone and its error is its caller's. The batch's transaction is synced at the
URL's level if any of its operations asked for it (group commit: one sync for many).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from proxy.errors import StoreError, StoreFull
from proxy.store.base import (
    COUNT_HOURS,
    JOB_KEPT,
    MEMO_KEPT,
    KeyStats,
    Stats,
    Window,
    add_key,
    capped,
)
from proxy.store.semantics import heartbeat as beat_rule
from proxy.store.sqlite.schema import open_file
from proxy.store.sqlite.tables import Change
from proxy.store.sqlite.windows import Windows

JobRow = tuple[str, str, int, str]  # a job: id, blob, tries, error

Op = Callable[..., Any]  # one of Engine's methods, called as op(engine, *args)
Job = tuple[Op, tuple[Any, ...], bool]  # an operation, its arguments, durable
Answer = tuple[bool, Any, list[Change]]  # ok, its value (or its error), the count changes


class Engine(Windows):
    def __init__(self, c: sqlite3.Connection, sync: str) -> None:
        super().__init__(c)
        self.sync = sync  # the URL's level
        self.synced = sync  # the connection's level now
        self.leased = {}
        self.kept = {}
        self.counts.read(c)

    @classmethod
    def open(cls, path: Path, sync: str) -> Engine:
        return cls(open_file(path, sync), sync)

    def close(self) -> None:
        self.c.close()

    def run(self, batch: Sequence[Job]) -> list[Answer]:
        """The batch in one transaction, each operation in a savepoint of its own."""
        c = self.c
        answers: list[Answer] = []
        try:
            sync = self.sync if any(durable for _, _, durable in batch) else "NORMAL"
            if sync != self.synced:  # WAL: a later synced commit syncs this one's frames too
                c.execute(f"PRAGMA synchronous={sync}")
                self.synced = sync
            c.execute("BEGIN IMMEDIATE")
            self.opened = 0
            for op, args, _ in batch:
                self.changes = []
                c.execute("SAVEPOINT job")
                try:
                    answers.append((True, op(self, *args), self.changes))
                    c.execute("RELEASE job")
                    self.opened += sum(n for what, _, n in self.changes if what == "groups")
                except Exception as e:  # noqa: BLE001 - any failure is this job's alone: undone, told to its caller
                    self.kept.clear()  # (heads it changed in place)
                    c.execute("ROLLBACK TO job")
                    c.execute("RELEASE job")
                    answers.append((False, error_of(e), []))
            c.execute("COMMIT")
            for ok, _, changes in answers:
                for what, rk, n in changes if ok else ():
                    self.counts.apply(what, rk, n)
        except sqlite3.Error as e:
            self.kept.clear()
            with contextlib.suppress(sqlite3.Error):
                c.execute("ROLLBACK")
            answers = [(False, error_of(e), [])] * len(batch)
        return answers

    # -- what the gauges, the report and the health check read --------------------------------
    def stats(self, now: float, window: Window) -> Stats:
        c = self.c
        keys: dict[str, KeyStats] = {}
        for rk, depth in list(self.counts.depth.items()):
            sent = self.sent_in_window(rk, now, window)
            if not depth and not sent:
                continue
            oldest = c.execute("SELECT MIN(enqueued_at) FROM outbox WHERE rk = ?", (rk,)).fetchone()[0]
            add_key(keys, self.counts.names.get(rk, "?"), KeyStats(depth, oldest if oldest is not None else now, sent))
        dues = [d for (d,) in c.execute("SELECT MIN(due) FROM groups WHERE urgent = 1 UNION ALL "
                                        "SELECT MIN(due) FROM groups WHERE urgent = 0") if d is not None]
        return Stats(groups_open=self.counts.groups, dead=self.counts.dead, keys=keys,
                     oldest_due=min(dues) if dues else None)

    def add_counts(self, hour: int, counts: dict[str, float]) -> None:
        c = self.c
        c.execute("DELETE FROM counts WHERE hour <= ?", (hour - COUNT_HOURS,))
        have = {f for (f,) in c.execute("SELECT field FROM counts WHERE hour = ?", (hour,))}
        c.executemany("INSERT INTO counts (hour, field, n) VALUES (?, ?, ?) ON CONFLICT(hour, field) "
                      "DO UPDATE SET n = n + excluded.n",
                      [(hour, f, v) for f, v in capped(have, counts).items()])

    def hourly(self, since_hour: int) -> dict[int, dict[str, float]]:
        out: dict[int, dict[str, float]] = {}
        for hour, field, n in self.c.execute("SELECT hour, field, n FROM counts WHERE hour >= ?",
                                             (since_hour,)):
            out.setdefault(hour, {})[field] = n
        return out

    def first_time(self, key: str, now: float, ttl: float) -> bool:
        self.c.execute("DELETE FROM seen WHERE until <= ?", (now,))
        return self.c.execute("INSERT OR IGNORE INTO seen (key, until) VALUES (?, ?)",
                              (key, now + ttl)).rowcount == 1

    # -- jobs (store.base.JobStore): a done job keeps its row, blob emptied, until `due`

    def add_job(self, row: JobRow, now: float) -> bool:
        self.c.execute("DELETE FROM jobs WHERE state = 'done' AND due <= ?", (now,))
        return self.c.execute("INSERT OR IGNORE INTO jobs (id, blob, tries, error, state, due) "
                              "VALUES (?, ?, ?, ?, 'ready', ?)", (*row, now)).rowcount == 1

    def claim_jobs(self, now: float, lease: float, limit: int) -> list[JobRow]:
        rows = self.c.execute("SELECT id, blob, tries, error FROM jobs WHERE state = 'ready' AND "
                              "due <= ? ORDER BY due, id LIMIT ?", (now, limit)).fetchall()
        self.c.executemany("UPDATE jobs SET due = ? WHERE id = ?", [(now + lease, r[0]) for r in rows])
        return rows

    def end_job(self, row: JobRow, how: str, now: float, due: float) -> None:
        jid, blob, tries, error = row
        if how == "done":
            self.c.execute("UPDATE jobs SET state = 'done', blob = '', due = ? WHERE id = ?",
                           (now + JOB_KEPT, jid))
        else:
            self.c.execute("UPDATE jobs SET state = ?, blob = ?, tries = ?, error = ?, due = ? "
                           "WHERE id = ?", ("ready" if how == "retry" else "dead", blob, tries, error,
                                            due if how == "retry" else now, jid))

    def dead_jobs(self, limit: int) -> list[JobRow]:
        return self.c.execute("SELECT id, blob, tries, error FROM jobs WHERE state = 'dead' "
                              "ORDER BY due, id LIMIT ?", (limit,)).fetchall()

    def memo(self, key: str, value: str | None, now: float) -> str | None:
        if value is not None:
            self.c.execute("INSERT OR REPLACE INTO memos (key, value, until) VALUES (?, ?, ?)",
                           (key, value, now + MEMO_KEPT))
            return value
        row = self.c.execute("SELECT value FROM memos WHERE key = ? AND until > ?", (key, now)).fetchone()
        return row[0] if row else None

    def put_silence(self, sid: str, blob: str, ends_at: float) -> None:
        self.c.execute("INSERT OR REPLACE INTO silences (id, blob, ends_at) VALUES (?, ?, ?)",
                       (sid, blob, ends_at))

    def silences(self) -> list[str]:
        return [b for (b,) in self.c.execute("SELECT blob FROM silences ORDER BY id")]

    def forget_silences(self, ended_before: float) -> int:
        return self.c.execute("DELETE FROM silences WHERE ends_at < ?", (ended_before,)).rowcount

    def heartbeat(self, name: str, kind: str, now: float, limit: float) -> bool:
        row = self.c.execute("SELECT last, paged FROM beats WHERE name = ?", (name,)).fetchone()
        before = None if row is None else (row[0], bool(row[1]))
        state, send = beat_rule(before, kind, now, limit)
        if state is not None and state != before:  # (a check that changes nothing writes nothing)
            self.c.execute("INSERT OR REPLACE INTO beats (name, last, paged) VALUES (?, ?, ?)",
                           (name, state[0], int(state[1])))
        return send

    def heartbeats(self) -> dict[str, tuple[float, bool]]:
        return {n: (last, bool(p)) for n, last, p in self.c.execute("SELECT name, last, paged FROM beats")}

    def ping(self) -> None:
        self.c.execute("SELECT 1").fetchone()

    def footprint(self) -> dict[str, int]:
        def n(q: str) -> int:
            return int(self.c.execute(q).fetchone()[0])

        return {"groups": n("SELECT COUNT(*) FROM groups"),
                "fingerprints": n("SELECT COUNT(DISTINCT fp) FROM alerts"),
                "tombstones": n("SELECT COUNT(*) FROM tombs"),
                "events": n("SELECT COUNT(*) FROM outbox"),
                "lines": n("SELECT COUNT(*) FROM (SELECT DISTINCT rk, dk FROM outbox)"),
                "dead": n("SELECT COUNT(*) FROM dead"),
                "marks": n("SELECT COUNT(DISTINCT mark) FROM marks"),
                "seen": n("SELECT COUNT(*) FROM seen"),
                "budgets": n("SELECT COUNT(DISTINCT rk) FROM stamps")}


def error_of(e: BaseException) -> tuple[str, str]:
    """An error as the engine answers it: its kind and its text."""
    if isinstance(e, sqlite3.Error):
        return "StoreError", f"sqlite: {type(e).__name__}: {e}"
    return type(e).__name__, str(e)


def revive(kind: str, text: str) -> Exception:
    """The error a call raises in the proxy for one the engine answered."""
    if kind == "StoreFull":
        e: StoreError = StoreFull.__new__(StoreFull)
        Exception.__init__(e, text)  # the engine's text (StoreFull() would write its own)
        return e
    return StoreError(text if kind == "StoreError" else f"sqlite: {kind}: {text}")
