"""The outbox in SQL: lines of events per (routing key, dedup key), the per-key budget
window, pauses and dead letters. Each operation runs inside the engine's transaction; the
rules (coalescing, the budget window, when a head is ready) are store/semantics.py's."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from proxy.model import OutEvent
from proxy.store.base import Take, Window
from proxy.store.semantics import budget_wait, coalesces, ready
from proxy.store.sqlite.schema import EVENT_COLS, INSERT_EVENT, chunks, event_of, marks
from proxy.store.sqlite.tables import Tables


class Outbox(Tables):
    def enqueue(self, events: Sequence[OutEvent]) -> None:
        """Append each event to its line (rk, dk); a trigger behind a trigger not yet leased
        replaces it. The lines' last events are read in one query per 400 lines, the new
        rows written in one statement unless a line gets two events in this call."""
        c = self.c
        last = self._last_of_lines(events)
        twice = {k for k, n in Counter((ev.routing_key, ev.dedup_key) for ev in events).items() if n > 1}
        rows: list[tuple[Any, ...]] = []
        for ev in events:
            line = (ev.routing_key, ev.dedup_key)
            prev = last.get(line)
            if prev and coalesces(ev.action, prev[1], prev[2], ev.enqueued_at):
                c.execute("UPDATE outbox SET body = ?, severity = ?, prio = ? WHERE seq = ?",
                          (ev.body, ev.severity, ev.priority, prev[0]))
                continue
            head = prev is None
            row = (ev.routing_key, ev.dedup_key, ev.action, ev.severity, ev.priority, ev.body,
                   ev.key_name, ev.attempts, ev.not_before, ev.enqueued_at, ev.last_error, int(head),
                   ev.not_before if head and not ready(ev.not_before, 0.0) else 0)
            if line in twice:  # a later event of this call may follow up on this row
                if rows:  # (the rows before it first: numbers follow the events' order)
                    c.executemany(INSERT_EVENT, rows)
                    rows = []
                seq = c.execute(INSERT_EVENT, row).lastrowid
                last[line] = (int(seq or 0), ev.action, 0.0)
            else:
                rows.append(row)
            self.count("depth", 1, ev.routing_key, ev.key_name)
        if rows:
            c.executemany(INSERT_EVENT, rows)

    def _last_of_lines(self, events: Sequence[OutEvent]) -> dict[tuple[str, str], tuple[int, str, float]]:
        """(rk, dk) -> the last event of that line: its number, action and lease end."""
        last: dict[tuple[str, str], tuple[int, str, float]] = {}
        by_rk: dict[str, list[str]] = {}
        for ev in events:
            by_rk.setdefault(ev.routing_key, []).append(ev.dedup_key)
        for rk, dks in by_rk.items():
            for chunk in chunks(sorted(set(dks))):
                for seq, dk, action, lease in self.c.execute(
                        f"SELECT seq, dk, action, lease FROM outbox WHERE rk = ? AND dk IN "
                        f"({marks(len(chunk))})", (rk, *chunk)):
                    if (rk, dk) not in last or seq > last[(rk, dk)][0]:
                        last[(rk, dk)] = (seq, action, lease)
        return last

    def take(self, rk: str, now: float, lease: float, window: Window) -> Take:
        c = self.c
        paused = c.execute("SELECT until FROM pauses WHERE rk = ?", (rk,)).fetchone()
        if paused and paused[0] > now:
            return Take(None, paused[0] - now)
        c.execute("UPDATE outbox SET wait_until = 0, lease = 0 WHERE rk = ? AND head = 1 AND "
                  "wait_until > 0 AND wait_until <= ?", (rk, now))
        best = c.execute(f"SELECT {EVENT_COLS}, prio FROM outbox WHERE rk = ? AND head = 1 AND "
                         "wait_until = 0 ORDER BY prio, seq LIMIT 1", (rk,)).fetchone()
        if best is None:
            nxt = c.execute("SELECT MIN(wait_until) FROM outbox WHERE rk = ? AND head = 1 AND "
                            "wait_until > 0", (rk,)).fetchone()[0]
            return Take(None, math.inf if nxt is None else max(0.001, nxt - now))
        wait = self._budget_wait(rk, best[-1], now, window)
        if wait:
            return Take(None, wait)
        stamp = c.execute("INSERT INTO stamps (rk, at) VALUES (?, ?)", (rk, now)).lastrowid
        assert stamp is not None
        c.execute("UPDATE outbox SET lease = ?, wait_until = ? WHERE seq = ?",
                  (now + lease, now + lease, best[0]))
        return Take(event_of(best[:-1]), 0.0, stamp)

    def _budget_wait(self, rk: str, prio: int, now: float, window: Window) -> float:
        c = self.c
        c.execute("DELETE FROM stamps WHERE rk = ? AND at <= ?", (rk, now - window.seconds))
        n = c.execute("SELECT COUNT(*) FROM stamps WHERE rk = ?", (rk,)).fetchone()[0]
        return budget_wait(n, lambda i: float(c.execute(
            "SELECT at FROM stamps WHERE rk = ? ORDER BY at LIMIT 1 OFFSET ?", (rk, i)).fetchone()[0]),
            prio, now, window)

    def _settle(self, stamp: int, now: float) -> None:
        if stamp:
            self.c.execute("UPDATE stamps SET at = MAX(at, ?) WHERE id = ?", (now, stamp))

    def _pop(self, ev: OutEvent, now: float) -> tuple[Any, ...] | None:
        """Take the event off its line; the next of the line becomes its head."""
        c = self.c
        row = c.execute(f"SELECT {EVENT_COLS} FROM outbox WHERE seq = ?", (ev.seq,)).fetchone()
        if row is None:
            return None
        c.execute("DELETE FROM outbox WHERE seq = ?", (ev.seq,))
        self.count("depth", -1, ev.routing_key)
        nxt = c.execute("SELECT seq, not_before FROM outbox WHERE rk = ? AND dk = ? ORDER BY seq "
                        "LIMIT 1", (ev.routing_key, ev.dedup_key)).fetchone()
        if nxt:
            c.execute("UPDATE outbox SET head = 1, wait_until = ? WHERE seq = ?",
                      (0 if ready(nxt[1], now) else nxt[1], nxt[0]))
        return tuple(row)

    def done(self, ev: OutEvent, stamp: int, now: float) -> None:
        self._pop(ev, now)
        self._settle(stamp, now)

    def retry(self, ev: OutEvent, stamp: int, not_before: float, error: str, count: bool,
              now: float) -> None:
        self._settle(stamp, now)
        self.c.execute("UPDATE outbox SET not_before = ?, last_error = ?, attempts = attempts + ?, "
                       "lease = 0, wait_until = CASE WHEN head = 1 THEN ? ELSE wait_until END "
                       "WHERE seq = ?", (not_before, error, int(count), max(0.0, not_before), ev.seq))

    def release(self, ev: OutEvent, stamp: int, now: float) -> None:
        self.c.execute("DELETE FROM stamps WHERE id = ?", (stamp,))
        self.c.execute("UPDATE outbox SET lease = 0, wait_until = CASE WHEN not_before > ? THEN "
                       "not_before ELSE 0 END WHERE seq = ?", (now, ev.seq))

    def dead(self, ev: OutEvent, stamp: int, error: str, now: float) -> None:
        row = self._pop(ev, now)
        self._settle(stamp, now)
        if row is not None:
            seq, rk, dk, action, severity, body, name, attempts, _, enq, _ = row
            self.c.execute("INSERT INTO dead (seq, rk, dk, action, severity, body, key_name, attempts, "
                           "enqueued_at, last_error) VALUES (?,?,?,?,?,?,?,?,?,?)",
                           (seq, rk, dk, action, severity, body, name, attempts + 1, enq, error))
            self.count("dead", 1)

    def pending(self, limit: int) -> list[OutEvent]:
        return [event_of(r) for r in self.c.execute(
            f"SELECT {EVENT_COLS} FROM outbox ORDER BY seq LIMIT ?", (limit,))]

    def dead_letters(self, limit: int) -> list[OutEvent]:
        return [event_of((*r[:8], 0.0, *r[8:])) for r in self.c.execute(
            "SELECT seq, rk, dk, action, severity, body, key_name, attempts, enqueued_at, last_error "
            "FROM dead ORDER BY seq LIMIT ?", (limit,))]

    def requeue_dead(self, seqs: Sequence[int] | None) -> int:
        n, wanted = 0, None if seqs is None else set(seqs)
        for e in self.dead_letters(1 << 62):
            if wanted is not None and e.seq not in wanted:
                continue
            self.c.execute("DELETE FROM dead WHERE seq = ?", (e.seq,))
            self.count("dead", -1)
            n += 1
            e.attempts, e.not_before, e.last_error = 0, 0.0, ""
            self.enqueue([e])
        return n

    # -- the budget -----------------------------------------------------------------------
    def pause(self, rk: str, until: float) -> None:
        self.c.execute("INSERT INTO pauses (rk, until) VALUES (?, ?) ON CONFLICT(rk) DO UPDATE SET "
                       "until = MAX(until, excluded.until)", (rk, until))

    def sent_in_window(self, rk: str, now: float, window: Window) -> int:
        return int(self.c.execute("SELECT COUNT(*) FROM stamps WHERE rk = ? AND at > ?",
                                  (rk, now - window.seconds)).fetchone()[0])
