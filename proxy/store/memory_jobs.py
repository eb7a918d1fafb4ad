"""The memory store's jobs (store.base.JobStore): a dict of records, a heap of due times
(entries a later change made stale are skipped), the finished ones forgotten in the order
they finished (JOB_KEPT is one length for all), the dead in the order they died."""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import replace

from proxy.store.base import JOB_KEPT, MEMO_KEPT, Job
from proxy.store.semantics import ready


class MemoryJobs:
    def _init_jobs(self) -> None:
        self._jobs: dict[str, tuple[Job, str, float]] = {}  # id -> (job, state, due)
        self._job_due: list[tuple[float, str]] = []  # (due, id) of ready jobs; some stale
        self._job_gone: deque[tuple[float, str]] = deque()  # done: (forget at, id)
        self._job_dead: dict[str, None] = {}  # in the order they died
        self._memos: dict[str, tuple[str, float]] = {}

    def _forget_jobs(self, now: float) -> None:
        while self._job_gone and self._job_gone[0][0] <= now:
            _, jid = self._job_gone.popleft()
            if jid in self._jobs and self._jobs[jid][1] == "done":
                del self._jobs[jid]

    async def add_job(self, job: Job, now: float) -> bool:
        self._forget_jobs(now)
        if job.id in self._jobs:
            return False
        self._jobs[job.id] = (replace(job), "ready", now)
        heapq.heappush(self._job_due, (now, job.id))
        return True

    async def claim_jobs(self, now: float, lease: float, limit: int) -> list[Job]:
        out: list[Job] = []
        while self._job_due and len(out) < limit and ready(self._job_due[0][0], now):
            due, jid = heapq.heappop(self._job_due)
            rec = self._jobs.get(jid)
            if rec is None or rec[1] != "ready" or rec[2] != due:
                continue  # stale: done, dead, or due at another time since
            self._jobs[jid] = (rec[0], "ready", now + lease)
            heapq.heappush(self._job_due, (now + lease, jid))
            out.append(replace(rec[0]))
        return out

    async def end_job(self, job: Job, how: str, now: float, due: float = 0.0) -> None:
        if job.id not in self._jobs:
            return
        if how == "done":
            self._jobs[job.id] = (Job(job.id, ""), "done", now + JOB_KEPT)
            self._job_gone.append((now + JOB_KEPT, job.id))
        elif how == "retry":
            self._jobs[job.id] = (replace(job), "ready", due)
            heapq.heappush(self._job_due, (due, job.id))
        else:
            self._jobs[job.id] = (replace(job), "dead", now)
            self._job_dead[job.id] = None

    async def dead_jobs(self, limit: int = 1000) -> list[Job]:
        out = []
        for jid in self._job_dead:
            rec = self._jobs.get(jid)
            if rec is not None and rec[1] == "dead":
                out.append(replace(rec[0]))
            if len(out) >= limit:
                break
        return out

    async def memo(self, key: str, value: str | None, now: float) -> str | None:
        if value is not None:
            self._memos[key] = (value, now + MEMO_KEPT)
            return value
        kept = self._memos.get(key)
        return kept[0] if kept is not None and kept[1] > now else None
