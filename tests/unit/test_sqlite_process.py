"""The SQLite store's own process, seen from the store's interface: a file it cannot open,
a process killed with calls under way, calls under way at close(), and how it reads its
jobs off the pipe."""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import threading
import time

import pytest

from proxy.errors import StoreError
from proxy.model import GroupMeta
from proxy.store import Entry, Window
from proxy.store.sqlite import _FRAME, SqliteStore, _frame, _Inbox
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
    assert [c.result() for c in calls] == [0] * 50
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


def test_the_process_reads_its_jobs_whole_however_the_pipe_cuts_them():
    """The child reads its jobs on the thread that runs them (no reader thread): frames
    that come in pieces, or many in one read, are each one job; it waits only when no
    whole frame is left; the end of the stream, or a frame that is not a job's, ends it."""
    r, w = os.pipe()
    inbox = _Inbox(r)
    jobs = [("stats", (float(i), Window()), i % 2 == 0) for i in range(5)]
    data = b"".join(_frame(job) for job in jobs)
    with pytest.raises(queue.Empty):
        inbox.get_nowait()
    os.write(w, data[:3])  # not even a whole length
    with pytest.raises(queue.Empty):
        inbox.get_nowait()
    os.write(w, data[3:len(_frame(jobs[0])) + 5])  # one frame and the start of the next
    assert inbox.get_nowait() == jobs[0]
    with pytest.raises(queue.Empty):
        inbox.get_nowait()

    def rest() -> None:
        time.sleep(0.2)
        os.write(w, data[len(_frame(jobs[0])) + 5:])

    writer = threading.Thread(target=rest)
    writer.start()
    t0 = time.monotonic()
    assert inbox.get() == jobs[1]  # waited for the rest of the frame
    assert time.monotonic() - t0 >= 0.15
    writer.join()
    assert [inbox.get_nowait() for _ in range(3)] == jobs[2:]
    os.write(w, _FRAME.pack(4) + b"\x00\x01\x02\x03")  # not a pickle
    assert inbox.get_nowait() is None
    assert inbox.get() is None
    os.close(w)
    os.close(r)

    r, w = os.pipe()
    inbox = _Inbox(r)
    os.write(w, _frame(jobs[0]) + _frame(jobs[1])[:7])
    os.close(w)  # the proxy is gone midway through a frame
    assert inbox.get() == jobs[0]
    assert inbox.get() is None
    assert inbox.get_nowait() is None
    os.close(r)
