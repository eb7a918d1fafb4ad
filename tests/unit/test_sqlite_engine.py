"""The SQLite engine driven in-process, as the store's process drives it: typed operations
in batches, each batch one transaction, each operation a savepoint of its own."""

from __future__ import annotations

import random
import sqlite3

from proxy.errors import StoreFull
from proxy.model import SEEN_STEP, OutEvent
from proxy.store import Resolved, Window
from proxy.store.sqlite.engine import Engine, revive
from proxy.store.sqlite.schema import HEAD_COLS, Head, groups_of

KEY = "0123456789abcdef0123456789abcdef"
T0 = 1_700_000_000.0


def row(key: str, fp: str) -> tuple[object, ...]:
    return (key, ("r", KEY, "PD", {"k": key}), fp,
            f'{{"fingerprint": "{fp}", "status": "firing", "labels": {{"fp": "{fp}"}}}}',
            30.0, 300.0, 60.0, 10, False)


def event(dk: str) -> OutEvent:
    return OutEvent(KEY, dk, "trigger", "error", b"{}", key_name="PD", enqueued_at=T0)  # type: ignore[arg-type]


def test_a_batch_is_one_transaction_and_a_failing_operation_is_undone_alone(tmp_path):
    engine = Engine.open(tmp_path / "state.db", "FULL")
    answers = engine.run([
        (Engine.record, ([row("g1", "a")], [], T0, [], 10), True),
        (Engine.record, ([row("g2", "b"), row("g3", "c")], [], T0, [], 1), True),  # over the cap
        (Engine.enqueue, ([event("d1")],), False),
    ])
    assert [ok for ok, _, _ in answers] == [True, False, True]
    assert isinstance(revive(*answers[1][1]), StoreFull)
    assert answers[0][2] == [("groups", "", 1)]  # the count changes that went in
    assert engine.counts.groups == 1 and engine.counts.depth == {KEY: 1}
    engine.close()

    again = Engine.open(tmp_path / "state.db", "FULL")  # committed: on the disk
    assert again.counts.groups == 1 and again.counts.depth == {KEY: 1}
    assert [g.key for g in groups_of(again.groups())] == ["g1"]
    assert [e.dedup_key for e in again.pending(10)] == ["d1"]
    again.close()


def test_max_groups_counts_the_groups_opened_earlier_in_the_same_transaction(tmp_path):
    """Requests that come together share a transaction: the second one's limit sees the
    groups the first opened (the counts themselves move at the commit)."""
    engine = Engine.open(tmp_path / "state.db", "NORMAL")
    answers = engine.run([(Engine.record, ([row(f"g{i}", f"a{i}")], [], T0, [], 2), True) for i in range(4)])
    assert [ok for ok, _, _ in answers] == [True, True, False, False]
    assert engine.counts.groups == 2 and len(engine.groups()[0]) == 2
    (ok, _, _), = engine.run([(Engine.record, ([row("g0", "b")], [], T0, [], 2), True)])
    assert ok  # alerts of open groups are still taken
    engine.close()


def test_claims_are_leases_held_by_the_engine(tmp_path):
    engine = Engine.open(tmp_path / "state.db", "NORMAL")
    engine.run([(Engine.record, ([row("g1", "a"), row("g2", "b")], [], T0, [], 10), True)])
    (ok, rows, _), = engine.run([(Engine.claim_due, (T0 + 30, 10.0, 1), False)])
    assert ok and [g.key for g in groups_of(rows)] == ["g1"]
    (_, rows, _), = engine.run([(Engine.claim_due, (T0 + 31, 10.0, 5), False)])
    assert [g.key for g in groups_of(rows)] == ["g2"]  # g1 is leased
    (_, rows, _), = engine.run([(Engine.claim_due, (T0 + 41, 10.0, 5), False)])
    assert sorted(g.key for g in groups_of(rows)) == ["g1", "g2"]  # the leases ran out
    engine.close()


def test_a_broken_file_fails_the_batch_not_the_engine(tmp_path):
    engine = Engine.open(tmp_path / "state.db", "NORMAL")
    engine.c.execute("DROP TABLE pauses")
    (ok, err, _), = engine.run([(Engine.pause, (KEY, T0), True)])
    assert not ok and err[0] == "StoreError" and "pauses" in err[1]
    (ok, _, _), = engine.run([(Engine.take, (KEY, T0, 10.0, Window()), True)])
    assert not ok  # take reads the pauses too
    (ok, n, _), = engine.run([(Engine.sent_in_window, (KEY, T0, Window()), True)])
    assert ok and n == 0
    assert isinstance(engine.c, sqlite3.Connection)
    engine.close()


def test_a_repeat_within_the_seen_step_changes_no_row(tmp_path):
    """An alert sent again unchanged less than SEEN_STEP after the group's last_seen writes
    nothing (no page of the file changes); after the step, the group's last_seen alone."""
    engine = Engine.open(tmp_path / "state.db", "NORMAL")
    rows = [row("g1", "a"), row("g2", "b")]
    engine.run([(Engine.record, (rows, [], T0, [], 10), True)])
    before = engine.c.total_changes
    engine.run([(Engine.record, (rows, [], T0 + SEEN_STEP / 2, [], 10), True)])
    assert engine.c.total_changes == before
    engine.run([(Engine.record, (rows, [], T0 + SEEN_STEP, [], 10), True)])
    assert engine.c.total_changes == before + 2  # each group's last_seen
    assert {g.last_seen for g in groups_of(engine.groups())} == {T0 + SEEN_STEP}
    engine.close()


def test_the_heads_kept_between_requests_are_the_files(tmp_path):
    """The engine keeps the heads of the groups requests touched (windows.HEADS_KEPT) and
    reads them back only when it has not: after any mix of records, resolves, flush
    commits (groups kept or deleted), refusals (--max-groups) and an operation that fails
    after it changed its heads (undone alone in its savepoint), every head kept is the row
    the file holds."""
    rng = random.Random(33)
    engine = Engine.open(tmp_path / "state.db", "NORMAL")
    now, checked = T0, 0
    for _ in range(400):
        now += rng.choice([0.1, 0.6, 2.0, 40.0])
        what = rng.random()
        rows = [row(f"g{rng.randrange(6)}", f"a{rng.randrange(12)}") for _ in range(rng.randrange(1, 5))]
        if what < 0.5:
            engine.run([(Engine.record, (rows, [], now, [], rng.choice([3, 10])), True)])
        elif what < 0.65:
            fp = f"a{rng.randrange(12)}"
            gone = Resolved(fp, f'{{"fingerprint": "{fp}", "status": "resolved", "labels": {{"fp": "{fp}"}}}}', True, [])
            engine.run([(Engine.record, ([], [gone], now, [], 10), True)])
        elif what < 0.85:
            keys = [k for (k,) in engine.c.execute("SELECT key FROM groups")]
            if keys:
                k = rng.choice(keys)
                (version,), = engine.c.execute("SELECT version FROM groups WHERE key = ?", (k,))
                engine.run([(Engine.commit, ([(k, version, rng.random() < 0.3, now + 3600,
                                                (now + 60, 1, 0, now, now, "{}", k), [])],), True)])
        else:  # records its alerts, then fails on a lost group's resolve that is not an event
            broken = Resolved("nowhere", "{}", True, [("lost", "not an event")])  # type: ignore[list-item]
            answers = engine.run([(Engine.record, (rows, [broken], now, [], 10), True)])
            assert not answers[0][0]
        checked += len(engine.kept)
        for key, head in engine.kept.items():
            found = engine.c.execute(f"SELECT {HEAD_COLS} FROM groups WHERE key = ?", (key,)).fetchall()
            assert found and Head(*found[0]) == head, key
    assert checked > 1000  # (heads were kept, and compared)
    engine.close()
