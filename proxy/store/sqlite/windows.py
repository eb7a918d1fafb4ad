"""The groups in SQL: record alerts into their groups, claim the due ones, commit a flush.
Each operation runs inside the engine's transaction; the rules (when a group is due, what
a repeat or a resolve changes, what a lease is) are store/semantics.py's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from proxy.errors import StoreFull
from proxy.model import GroupMeta, OutEvent
from proxy.store.base import ALL_ALERTS, TOMBSTONE_TTL, Entry, Resolved
from proxy.store.semantics import claim_takes, claimable, put_alert
from proxy.store.sqlite.outbox import Outbox
from proxy.store.sqlite.schema import GROUP_COLS, HEAD_COLS, Head, Rows, chunks, marks

_Put = tuple[str, str, str, bool]  # an alert into a group: fingerprint, status, JSON, whole JSON
EntryRow = tuple[Any, ...]
"""An Entry's fields in order, its meta a tuple too: a slotted dataclass pickles through
dataclasses.fields() each time, 5x slower, and the main process is the one that is busy."""
CommitRow = tuple[str, int, bool, float, tuple[Any, ...] | None, list[tuple[Any, ...]]]
"""A flush's commit of one group: key, version read, delete, tombstone until, the new
values of the group's row (due, triggered, grown, last_trigger_at, last_flush_at, state,
key), its events' rows (schema.event_row)."""


_jh = hash
"""An alert's JSON, hashed for the comparison of a repeat with what the group holds:
Python's own string hash, 64 bits, kept with the string (computed once), ~0.2 µs for an
alert's JSON. It is salted per process: after a restart every hash read back differs, so
each alert's first repeat is written again once; two different JSONs compare equal with a
chance of 2^-64."""


HEADS_KEPT = 65_536
"""Groups whose heads the engine keeps at hand between requests (the file's only writer,
it knows them as they are): a group a request touches again is not read back. Bounded:
past it, the heads are forgotten and read again as requests come."""


class Windows(Outbox):
    leased: dict[str, float]  # group key -> lease end (claim_due); the engine's, not the file's
    kept: dict[str, Head]
    """Heads as the transaction under way leaves them (record changes them in place); a
    flush's commit forgets its groups', and a failed operation or transaction all of them."""

    def record(self, rows: Sequence[EntryRow], resolved: Sequence[Resolved], now: float,
               mark: Sequence[tuple[str, str]], max_groups: int) -> tuple[int, int, int]:
        """A whole request in a fixed number of statements, whatever its number of groups:
        (resolves sent for groups that are gone, alerts fired, alerts resolved)."""
        c = self.c
        c.execute("DELETE FROM tombs WHERE until <= ?", (now,))
        if mark:
            c.executemany("INSERT OR IGNORE INTO marks (mark, fp) VALUES (?, ?)", mark)
        puts: dict[str, list[_Put]] = {}  # group key -> its alerts
        caps: dict[str, int] = {}  # group key -> max_alerts
        first: dict[str, EntryRow] = {}
        for row in rows:  # (an Entry object each costs more than the rest of its row's work)
            key = row[0]
            puts.setdefault(key, []).append((row[2], "firing", row[3], True))
            caps[key] = row[7]
            first.setdefault(key, row)
        held = self._resolves(resolved, puts, caps)
        heads = self._heads(list(puts))
        read = {k: _written(h) for k, h in heads.items()}  # as the file holds them
        self._open([Entry(row[0], GroupMeta(*row[1]), *row[2:]) for k, row in first.items() if k not in heads],
                   heads, now, max_groups)
        for row in rows:
            if row[8] and row[0] in heads:
                heads[row[0]].urgent = True
        fired, resolved_ = self._put_many(heads, read, puts, caps, now)
        lost = self._gone([(k, ev) for r in resolved if r.fingerprint not in held
                           for k, ev in r.candidates], now)
        self.enqueue(lost)
        return len(lost), len(fired), len(resolved_ - fired)

    def _resolves(self, resolved: Sequence[Resolved], puts: dict[str, list[_Put]],
                  caps: dict[str, int]) -> dict[str, list[str]]:
        """Each resolve into every group that holds its alert; fingerprint -> those groups."""
        held: dict[str, list[str]] = {}
        if not resolved:
            return held
        fps = [r.fingerprint for r in resolved]
        self.c.executemany("DELETE FROM marks WHERE fp = ?", [(fp,) for fp in fps])
        for chunk in chunks(fps):
            for fp, gkey in self.c.execute(
                    f"SELECT fp, gkey FROM alerts WHERE fp IN ({marks(len(chunk))})", chunk):
                held.setdefault(fp, []).append(gkey)
        for r in resolved:
            for gkey in held.get(r.fingerprint, ()):
                puts.setdefault(gkey, []).append((r.fingerprint, "resolved", r.alert_json, r.full))
                caps.setdefault(gkey, 1 << 62)
        return held

    def _open(self, new: list[Entry], heads: dict[str, Head], now: float, max_groups: int) -> None:
        """New groups for the entries that have none."""
        if not new:
            return
        if self.counts.groups + self.opened + len(new) > max_groups:
            raise StoreFull(max_groups)
        self.c.executemany(f"INSERT INTO groups ({GROUP_COLS}) VALUES "
                           "(?,?,?,?,?,?,?,?,?,?,0,0,0,0,0,0,?,0,'{}')",
                           [(e.group_key, e.meta.rule, e.meta.routing_key, e.meta.key_name,
                             orjson.dumps(e.meta.group_labels).decode(), e.group_interval,
                             e.resolve_wait, now, now + e.group_wait, int(e.urgent), now) for e in new])
        self.count("groups", len(new))
        for e in new:
            heads[e.group_key] = Head(e.group_key, now + e.group_wait, e.urgent, False, False,
                                      0.0, 0, 0, now, 0, e.group_interval, e.resolve_wait)
            if len(self.kept) < HEADS_KEPT:
                self.kept[e.group_key] = heads[e.group_key]

    def _gone(self, candidates: list[tuple[str, OutEvent]], now: float) -> list[OutEvent]:
        """Resolves for groups that were paged and are gone (no group, no tombstone): each
        sent once, and a tombstone left."""
        if not candidates:
            return []
        ks = list(dict.fromkeys(k for k, _ in candidates))
        known: set[str] = set()
        for chunk in chunks(ks):
            q = marks(len(chunk))
            known.update(k for (k,) in self.c.execute(
                f"SELECT key FROM groups WHERE key IN ({q}) UNION SELECT key FROM tombs WHERE key IN ({q})",
                (*chunk, *chunk)))
        lost = []
        for key, ev in candidates:
            if key not in known:
                known.add(key)
                self.c.execute("INSERT OR REPLACE INTO tombs (key, until) VALUES (?, ?)",
                               (key, now + TOMBSTONE_TTL))
                lost.append(ev)
        return lost

    def _heads(self, keys: list[str]) -> dict[str, Head]:
        kept = self.kept
        out: dict[str, Head] = {}
        read = []
        for k in keys:
            h = kept.get(k)
            if h is None:
                read.append(k)
            else:
                out[k] = h
        if len(kept) + len(read) > HEADS_KEPT:
            kept.clear()
        for chunk in chunks(read):
            for row in self.c.execute(f"SELECT {HEAD_COLS} FROM groups WHERE key IN ({marks(len(chunk))})",
                                      chunk):
                out[row[0]] = kept[row[0]] = Head(*row)
        return out

    def _held(self, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], tuple[str, int]]:
        """(group key, fingerprint) -> (status, hash of the JSON) of the alerts the groups
        hold already, from the fingerprint index alone."""
        have: dict[tuple[str, str], tuple[str, int]] = {}
        for chunk in chunks(list({fp for _, fp in wanted})):
            q = f"SELECT gkey, fp, status, jh FROM alerts WHERE fp IN ({marks(len(chunk))})"
            for gkey, fp, st, jh in self.c.execute(q, chunk):
                if (gkey, fp) in wanted:
                    have[(gkey, fp)] = (st, jh)
        return have

    def _put_many(self, heads: dict[str, Head], read: dict[str, tuple[Any, ...]],
                  puts: dict[str, list[_Put]], caps: dict[str, int], now: float) -> tuple[set[str], set[str]]:
        """Alerts into their groups, by the scheduling rule (store/semantics.py): one read of
        the alerts the groups already hold, then one batch of writes of each kind. The
        fingerprints that fired and that resolved."""
        have = self._held({(k, fp) for k, alerts in puts.items() if k in heads for fp, *_ in alerts})
        inserts, updates = [], []
        fired: set[str] = set()
        resolved: set[str] = set()
        for key, alerts in puts.items():
            g = heads.get(key)
            for fp, status, js, full in alerts if g is not None else ():
                old = have.get((key, fp))
                put = put_alert(g, old[0] if old else None, status, full, caps[key], now)  # type: ignore[arg-type]
                if put.fired:
                    fired.add(fp)
                elif put.resolved:
                    resolved.add(fp)
                if put.new:
                    have[(key, fp)] = (status, _jh(js))
                    inserts.append((key, fp, status, js, _jh(js)))
                elif old is not None and (put.status is not None or put.json):
                    new = (put.status or old[0], _jh(js) if put.json else old[1])
                    if new != old:  # (an unchanged repeat writes nothing)
                        have[(key, fp)] = new
                        updates.append((new[0], js if put.json else None, new[1], key, fp))
        c = self.c
        if inserts:
            c.executemany("INSERT INTO alerts (gkey, fp, status, json, jh) VALUES (?, ?, ?, ?, ?)", inserts)
        if updates:  # (in order; a status alone keeps the JSON)
            c.executemany("UPDATE alerts SET status = ?, json = COALESCE(?, json), jh = ? "
                          "WHERE gkey = ? AND fp = ?", updates)
        moved, seen = [], []  # groups that changed; groups whose last_seen alone moved
        for key, g in heads.items():
            if key in puts:
                now_is = _written(g)
                was = read.get(key)  # (a group opened just now is not in `read`)
                if was is None or now_is[:-1] != was[:-1]:
                    moved.append((*now_is, key))
                elif now_is != was:
                    seen.append((g.last_seen, key))  # (the due index is left alone)
        if moved:
            c.executemany("UPDATE groups SET due = ?, urgent = ?, grown = ?, overflow = ?, version = ?, "
                          "n_alerts = ?, last_seen = ? WHERE key = ?", moved)
        if seen:
            c.executemany("UPDATE groups SET last_seen = ? WHERE key = ?", seen)
        return fired, resolved

    def marked(self, mark: Sequence[str]) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {m: set() for m in mark}
        for chunk in chunks(list(mark)):
            for m, fp in self.c.execute(f"SELECT mark, fp FROM marks WHERE mark IN ({marks(len(chunk))})",
                                        chunk):
                out[m].add(fp)
        return out

    def claim_due(self, now: float, lease: float, limit: int, alerts: int = ALL_ALERTS) -> Rows:
        """The due groups, urgent ones first, none under another flusher's lease. The leases
        live here, not in the file: a claim writes nothing, and a group whose flusher died is
        due again at the restart."""
        leased = self.leased
        keys: list[str] = []
        held = 0
        for lane in (1, 0):
            for (k, due, n) in self.c.execute(
                    "SELECT key, due, n_alerts FROM groups WHERE urgent = ? AND due <= ? ORDER BY due, key "
                    "LIMIT ?", (lane, now, limit - len(keys) + len(leased))) if len(keys) < limit else ():
                if claimable(due, leased.get(k, 0.0), now):
                    if not claim_takes(len(keys), held, n, alerts):
                        limit = len(keys)  # the claim ends here, in both lanes
                        break
                    keys.append(k)
                    held += n
                    if len(keys) >= limit:
                        break
        for k in [k for k, end in leased.items() if end <= now]:
            del leased[k]
        rows = self.load(keys)
        for row in rows[0]:
            leased[row[0]] = now + lease
        return rows

    def load(self, keys: Sequence[str]) -> Rows:
        found: dict[str, Sequence[Any]] = {}
        alert_rows: list[Sequence[Any]] = []
        for chunk in chunks(list(keys)):
            q = marks(len(chunk))
            for row in self.c.execute(f"SELECT {GROUP_COLS} FROM groups WHERE key IN ({q})", chunk):
                found[row[0]] = row
            alert_rows += self.c.execute(f"SELECT gkey, fp, status, json FROM alerts WHERE gkey IN ({q})",
                                         chunk).fetchall()
        return [found[k] for k in keys if k in found], alert_rows

    def commit(self, commits: Sequence[CommitRow]) -> list[bool]:
        """Each commit goes in if its group's version is the one its flush read."""
        c = self.c
        version: dict[str, int] = {}
        for chunk in chunks([cm[0] for cm in commits]):
            version.update(c.execute(f"SELECT key, version FROM groups WHERE key IN ({marks(len(chunk))})",
                                     chunk))
        out = [version.get(cm[0]) == cm[1] for cm in commits]
        done = [cm for cm, ok in zip(commits, out, strict=True) if ok]
        for cm in done:  # (a flusher whose commit failed holds its lease while it plans again)
            self.leased.pop(cm[0], None)
            self.kept.pop(cm[0], None)
        gone = [(cm[0],) for cm in done if cm[2]]
        if gone:
            c.executemany("DELETE FROM alerts WHERE gkey = ?", gone)
            c.executemany("DELETE FROM groups WHERE key = ?", gone)
            c.executemany("INSERT OR REPLACE INTO tombs (key, until) VALUES (?, ?)",
                          [(cm[0], cm[3]) for cm in done if cm[2]])
            self.count("groups", -len(gone))
        c.executemany("UPDATE groups SET due = ?, triggered = ?, grown = ?, last_trigger_at = ?, "
                      "last_flush_at = ?, state = ?, version = version + 1 WHERE key = ?",
                      [cm[4] for cm in done if cm[4] is not None])
        self.enqueue([OutEvent(*row) for cm in done for row in cm[5]])
        return out

    def groups(self) -> Rows:
        return self.load([k for (k,) in self.c.execute("SELECT key FROM groups ORDER BY opened_at")])

    def heads(self) -> list[Sequence[Any]]:
        return self.c.execute(f"SELECT {GROUP_COLS} FROM groups").fetchall()

    def groups_of(self, fingerprint: str) -> Rows:
        return self.load([k for (k,) in self.c.execute(
            "SELECT gkey FROM alerts WHERE fp = ? ORDER BY gkey", (fingerprint,))])


def _written(h: Head) -> tuple[Any, ...]:
    """What record writes back of a group, in the UPDATE's order (last_seen last: alone, it
    is written without the rest)."""
    return (h.due, int(h.urgent), int(h.grown), h.overflow, h.version, h.n_alerts, h.last_seen)
