"""The store's process and the pipe to it. The engine runs in a process of its own so that
SQLite and the event loop do not share one GIL: in a thread, the sqlite3 module gives up
the GIL at every row and waits for it back, and a flush ran at the speed of the two
threads' work added up.

Frames are the standard library's `multiprocessing.connection` frames (a 4-byte length,
then a pickle) of typed operations: a job is (Engine method, arguments, durable), an answer
a list of engine.Answer, one per job of the batch. In the store's process a
`multiprocessing.connection.Connection` reads and writes them; in the proxy, the event loop
writes and reads the same frames without blocking (`Child`), so it never waits on SQLite.

The store's process runs every job waiting on the pipe in one transaction (up to `BATCH`),
ignores SIGINT and SIGTERM (the proxy's shutdown decides when the store closes) and ends
when its stdin does: at close(), or when the proxy dies. If it dies, the calls under way
fail (StoreError) and the next call starts a new one; the groups it had leased are due
again, as after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pickle
import signal
import sqlite3
import struct
import subprocess
import sys
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from proxy.errors import StoreError
from proxy.store.sqlite.engine import Answer, Engine, Job, Op, revive
from proxy.store.sqlite.tables import Counts

BATCH = 256  # jobs per transaction at most
_LENGTH = struct.Struct("!i")  # multiprocessing.connection's frame header


def frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=5)
    return _LENGTH.pack(len(data)) + data


def serve(engine: Engine, jobs: Connection, answers: Connection) -> None:
    """Run the jobs as they come, each batch in one transaction, and answer each batch in
    one frame; return at the end of the jobs, at a frame that is not a job, or when no one
    reads the answers."""
    while True:
        batch: list[Job] = []
        end = False
        while len(batch) < BATCH and (not batch or jobs.poll(0)):
            try:
                job = jobs.recv()
            except (EOFError, OSError, pickle.UnpicklingError, AttributeError, ValueError):
                end = True
                break
            if not _is_job(job):
                end = True
                break
            batch.append(job)
        if batch:
            try:
                answers.send(engine.run(batch))
            except OSError:  # the proxy is gone
                return
        if end:
            return


def _is_job(job: Any) -> bool:
    return (isinstance(job, tuple) and len(job) == 3 and callable(job[0])
            and getattr(job[0], "__qualname__", "").split(".")[0] in ("Engine", "Windows", "Outbox")
            and isinstance(job[1], tuple))


def child_main() -> None:
    """The store's process: `python -c '...child_main()' PATH SYNC`, jobs in on stdin and
    answers out on stdout (which nothing else may write to: fd 1 is pointed at stderr)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    answers = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)
    path = Path(sys.argv[1])
    try:
        engine = Engine.open(path, sys.argv[2])
    except (sqlite3.Error, OSError) as e:
        answers.send(("error", f"sqlite: {path}: {e}"))
        return
    answers.send(("ready", engine.counts.as_changes()))
    try:
        serve(engine, Connection(os.dup(0), writable=False), answers)
    finally:
        engine.close()


class Child:
    """The proxy's handle on one store process, driven by the event loop it was started in:
    each job's frame is written at once (what the pipe does not take waits for it to be
    writable), and the answers are read as they come, in the jobs' order."""

    def __init__(self, path: Path, sync: str, mirror: Counts, loop: asyncio.AbstractEventLoop) -> None:
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[3])  # where `proxy` is imported from
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from proxy.store.sqlite.transport import child_main; child_main()",
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

    def call(self, op: Op, args: tuple[Any, ...], durable: bool) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self.loop.create_future()
        if self.ended:
            fut.set_exception(StoreError(self.ended))
            return fut
        self.pending.append(fut)
        data = frame((op, args, durable))
        if self.unsent:
            self.unsent += data
            return fut
        try:
            n = os.write(self.fd_in, data)
        except BlockingIOError:
            n = 0
        except OSError:  # it is gone: the end of its stdout tells the callers
            return fut
        if n < len(data):
            self.unsent += data[n:]
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
        size = _LENGTH.size
        while len(buf) >= size:
            (n,) = _LENGTH.unpack_from(buf)
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

    def _settle(self, answers: list[Answer]) -> None:
        for ok, value, changes in answers:
            for what, rk, n in changes:
                self.mirror.apply(what, rk, n)
            fut = self.pending.popleft()
            if fut.cancelled():
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(revive(*value))

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

    def stop(self) -> None:
        """End its stdin: it ends once it has run what it was sent."""
        with contextlib.suppress(OSError, AttributeError):
            self.proc.stdin.close()  # type: ignore[union-attr]

    async def close(self, timeout: float) -> None:
        """End the process once it has answered every call (its stdin ends)."""
        deadline = self.loop.time() + timeout
        while self.unsent and not self.ended and self.loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self.unsent:
            self.loop.remove_writer(self.fd_in)
        self.stop()  # (its buffer is empty: frames are written to its fd)
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
