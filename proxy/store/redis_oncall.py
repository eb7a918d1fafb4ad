"""The Redis store's on-call state: silences (a hash of their JSON, a sorted set of their
ends), heartbeats (a hash of "last paged", changed by lua/heartbeat.lua) and jobs (a hash
of records, sorted sets of the due, the done and the dead: keys.py; lua/job_*.lua)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from proxy.store import keys
from proxy.store import redis_calls as rc
from proxy.store.base import JOB_KEPT, MEMO_KEPT, Job


def _record(state: str, job: Job) -> bytes:
    return orjson.dumps({"s": state, "b": job.blob, "t": job.tries, "e": job.error})


def _job(jid: Any, raw: Any) -> Job:
    r = orjson.loads(raw) if raw else {}
    return Job(rc.text(jid), r.get("b", ""), int(r.get("t", 0)), r.get("e", ""))


class OnCall:
    _r: Any  # the redis client
    n: keys.Names

    async def _run(self, name: str, keys_: Sequence[str], *args: Any, durable: bool = False) -> Any:
        raise NotImplementedError

    @rc.wrapped
    async def put_silence(self, sid: str, blob: str, ends_at: float) -> None:
        async with self._r.pipeline(transaction=True) as p:  # (one slot: the keys share a tag)
            p.hset(self.n.silences, sid, blob)
            p.zadd(self.n.silence_ends, {sid: ends_at})
            await p.execute()

    @rc.wrapped
    async def silences(self) -> list[str]:
        return [b.decode() for b in (await self._r.hgetall(self.n.silences)).values()]

    @rc.wrapped
    async def forget_silences(self, ended_before: float) -> int:
        gone = await self._r.zrangebyscore(self.n.silence_ends, "-inf", f"({ended_before!r}")
        if gone:
            async with self._r.pipeline(transaction=True) as p:
                p.hdel(self.n.silences, *gone)
                p.zrem(self.n.silence_ends, *gone)
                await p.execute()
        return len(gone)

    @rc.wrapped
    async def heartbeat(self, name: str, kind: str, now: float, limit: float) -> bool:
        return bool(await self._run("heartbeat", [self.n.beats], name, kind, repr(now), repr(limit)))

    @rc.wrapped
    async def heartbeats(self) -> dict[str, tuple[float, bool]]:
        return {k.decode(): (float(v.split()[0]), v.endswith(b"1"))
                for k, v in (await self._r.hgetall(self.n.beats)).items()}

    # -- jobs ---------------------------------------------------------------------------
    @rc.wrapped
    async def add_job(self, job: Job, now: float) -> bool:
        n = self.n
        return bool(await self._run("job_add", [n.jobs, n.job_due, n.job_done], job.id,
                                    _record("ready", job), repr(now), durable=True))

    @rc.wrapped
    async def claim_jobs(self, now: float, lease: float, limit: int) -> list[Job]:
        flat = await self._run("job_claim", [self.n.jobs, self.n.job_due], repr(now), repr(now + lease), limit)
        return [_job(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]

    @rc.wrapped
    async def end_job(self, job: Job, how: str, now: float, due: float = 0.0) -> None:
        n = self.n
        async with self._r.pipeline(transaction=True) as p:  # (one slot: the keys share a tag)
            if how == "done":
                p.hset(n.jobs, job.id, _record("done", Job(job.id, "")))
                p.zrem(n.job_due, job.id)
                p.zadd(n.job_done, {job.id: now + JOB_KEPT})
            elif how == "retry":
                p.hset(n.jobs, job.id, _record("ready", job))
                p.zadd(n.job_due, {job.id: due})
            else:
                p.hset(n.jobs, job.id, _record("dead", job))
                p.zrem(n.job_due, job.id)
                p.zadd(n.job_dead, {job.id: now})
            await p.execute()

    @rc.wrapped
    async def dead_jobs(self, limit: int = 1000) -> list[Job]:
        ids = await self._r.zrange(self.n.job_dead, 0, limit - 1)
        if not ids:
            return []
        raws = await self._r.hmget(self.n.jobs, ids)
        return [_job(i, r) for i, r in zip(ids, raws, strict=True) if r and orjson.loads(r).get("s") == "dead"]

    @rc.wrapped
    async def memo(self, key: str, value: str | None, now: float) -> str | None:
        if value is not None:
            await self._r.set(self.n.memo(key), value, ex=int(MEMO_KEPT))
            return value
        raw = await self._r.get(self.n.memo(key))
        return rc.text(raw) if raw is not None else None
