"""The Redis store's on-call state: silences (a hash of their JSON, a sorted set of their
ends) and heartbeats (a hash of "last paged", changed by lua/heartbeat.lua)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from proxy.store import keys
from proxy.store import redis_calls as rc


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
