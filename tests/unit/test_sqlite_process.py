"""The SQLite store's own process, seen from the store's interface: a file it cannot open,
a process killed with calls under way, calls under way at close(), and how it reads its
jobs off the pipe (tests/unit/test_sqlite_engine.py drives the engine itself)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from multiprocessing.connection import Connection

import pytest

from proxy.errors import StoreError
from proxy.model import GroupMeta
from proxy.store import Entry, Stats, Window
from proxy.store.sqlite import SqliteStore
from proxy.store.sqlite.engine import Engine
from proxy.store.sqlite.transport import frame, serve
from tests.support import procs


def children() -> set[int]:
    return set(procs.children())


def entry(i: int) -> Entry:
    return Entry(group_key=f"g{i}", meta=GroupMeta("r", "k" * 32, "K", {"i": str(i)}),
                 fingerprint=f"f{i}",
                 alert_json=f'{{"fingerprint": "f{i}", "status": "firing", "labels": {{"i": "{i}"}}}}', group_wait=30.0, group_interval=60.0,
                 resolve_wait=0.0, max_alerts=10, urgent=False)


async def test_a_file_it_cannot_open_is_named_and_not_retried_in_a_loop(tmp_path):
    (tmp_path / "file").write_text("")
    store = SqliteStore(f"sqlite://{tmp_path}/file/state.db")  # a directory that is a file
    with pytest.raises(StoreError, match=f"{tmp_path}/file/state.db"):
        await store.ping()
    before = children()
    for _ in range(20):
        with pytest.raises(StoreError, match="state.db"):
            await store.stats(0.0, Window())
    assert children() - before == set()  # no process started per call
    await store.close()


async def test_a_killed_process_fails_the_calls_under_way_and_is_replaced(tmp_path):
    store = SqliteStore(f"sqlite://{tmp_path}/state.db")
    before = children()
    await store.record([entry(i) for i in range(5)], [], now=100.0)
    (pid,) = children() - before
    os.kill(pid, signal.SIGSTOP)  # held: the next call waits for it
    under_way = asyncio.ensure_future(store.record([entry(5)], [], now=101.0))
    await asyncio.sleep(0.1)
    assert not under_way.done()
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(StoreError, match="process ended"):
        await under_way
    assert (await store.stats(102.0, Window())).groups_open == 5  # what committed is there
    assert {g.key for g in await store.groups()} == {f"g{i}" for i in range(5)}
    (again,) = children() - before
    assert again != pid
    await store.close()
    assert children() - before == set()


async def test_close_answers_the_calls_under_way_first(tmp_path):
    store = SqliteStore(f"sqlite://{tmp_path}/state.db")
    calls = [asyncio.ensure_future(store.record([entry(i)], [], now=100.0)) for i in range(50)]
    await asyncio.sleep(0)
    await store.close()
    assert [c.result().lost for c in calls] == [0] * 50
    store = SqliteStore(f"sqlite://{tmp_path}/state.db")
    assert (await store.stats(100.0, Window())).groups_open == 50
    await store.close()


def test_a_store_used_from_a_second_event_loop_starts_a_process_there(tmp_path):
    """`asyncio.run` twice (a CLI that checks, then serves): the first loop's process ends."""
    store = SqliteStore(f"sqlite://{tmp_path}/state.db")
    before = children()
    asyncio.run(store.record([entry(1)], [], now=100.0))
    (first,) = children() - before

    async def second() -> int:
        await store.record([entry(2)], [], now=101.0)
        n = (await store.stats(102.0, Window())).groups_open
        await store.close()
        return n

    assert asyncio.run(second()) == 2
    deadline = time.monotonic() + 5
    while first in children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert children() - before == set()


def test_the_process_reads_its_jobs_whole_however_the_pipe_cuts_them(tmp_path):
    """The store's process reads typed jobs off its pipe: frames that come in pieces, or
    many in one write, are each one job, answered in order; the end
    of the stream, or a frame that is not a job, ends it."""
    engine = Engine.open(tmp_path / "state.db", "NORMAL")
    jobs_r, jobs_w = os.pipe()
    answers_r, answers_w = os.pipe()
    jobs = [(Engine.stats, (float(i), Window()), i % 2 == 0) for i in range(5)]
    data = b"".join(frame(job) for job in jobs) + frame(("not", "a job"))

    def write() -> None:
        os.write(jobs_w, data[:3])  # not even a whole length
        time.sleep(0.1)
        os.write(jobs_w, data[3:len(frame(jobs[0])) + 5])  # one frame and the start of the next
        time.sleep(0.1)
        os.write(jobs_w, data[len(frame(jobs[0])) + 5:])

    writer = threading.Thread(target=write)
    writer.start()
    serve(engine, Connection(jobs_r, writable=False), Connection(answers_w, readable=False))
    writer.join()
    back = Connection(answers_r, writable=False)
    batches = []
    with contextlib.suppress(EOFError):  # (its end closed once serve returned)
        while True:
            batches.append(back.recv())
    assert [a for b in batches for a in b] == [(True, Stats(0, 0, {}, None), [])] * 5
    engine.close()
    os.close(jobs_w)
    back.close()
