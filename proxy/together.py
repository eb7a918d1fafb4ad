"""Requests that arrive together are accepted together.

Most senders post one alert per request (Datadog, Grafana, Events v2 clients), and a storm
comes as many such requests at once. A pipeline call has a cost of its own besides each
alert's (the rules' pass, the store call, the figures; measured in a running proxy it is
most of a one-alert request's), so the requests of one source that reach the pipeline in
the same turn of the event loop share one call: the first leads (it yields to the loop
once, the turn's others join), then makes the call, and each still returns only once its
own alerts are in the store.

A refusal stays the request's own: when a shared call fails, each request of it is
accepted again on its own (a store's record is all or nothing per call, and a part
recorded before the failure is recorded again unchanged, as when a sender retries), so one
request that would open a group past --max-groups does not refuse the others."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from proxy.errors import StoreError

__all__ = ["Together"]

T = TypeVar("T")


MOST = 64
"""Items per shared call at most. Larger calls cost more per item, not less (measured at
1,024 alerts: 17 µs an alert against 10 at 64, the objects of one call no longer fit the
CPU's caches), and a request this large has no call cost left to share: it goes alone."""

Call = tuple[Sequence[T], "asyncio.Future[None] | None"]  # (items, its caller's future; the leader's: None)


class _Batch(Generic[T]):
    __slots__ = ("calls", "size")

    def __init__(self, first: Sequence[T]) -> None:
        self.calls: list[Call[T]] = [(first, None)]
        self.size = len(first)


class Together(Generic[T]):
    """`await together(key, items)`: `run(items)`, shared with the calls of the same key
    made in the same turn of the event loop, MOST items a call at most. The first call of
    a turn leads: it lets the turn's other callers join (one yield to the loop), then
    runs the shared call itself and wakes them."""

    def __init__(self, run: Callable[[Sequence[T]], Awaitable[None]]) -> None:
        self._run = run
        self._open: dict[str, _Batch[T]] = {}  # key -> the batch still taking callers

    async def __call__(self, key: str, items: Sequence[T]) -> None:
        if len(items) >= MOST:
            await self._run(items)
            return
        batch = self._open.get(key)
        if batch is not None and batch.size + len(items) <= MOST:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            batch.calls.append((items, fut))
            batch.size += len(items)
            await fut
            return
        batch = self._open[key] = _Batch(items)
        await self._lead(key, batch)

    async def _lead(self, key: str, batch: _Batch[T]) -> None:
        """Let the turn's other callers join, then the shared call; the leader's own
        failure is raised, the others' set."""
        calls = batch.calls
        try:
            try:
                await asyncio.sleep(0)
            finally:
                if self._open.get(key) is batch:
                    del self._open[key]
            others = calls[1:]
            if others and await self._shared(calls):
                return
            for items, fut in others:
                try:
                    await self._run(items)
                except Exception as e:  # noqa: BLE001 - the caller's to answer (a 503, a 4xx)
                    _settle(fut, e)
                else:
                    _settle(fut, None)
            await self._run(calls[0][0])
        finally:
            for _, fut in calls[1:]:  # the leader was cancelled (the loop is closing): not taken
                _settle(fut, StoreError("the request was cut off before its alerts were stored: "
                                        "send it again"))

    async def _shared(self, calls: list[Call[T]]) -> bool:
        """All the calls' items in one call; False if it failed (each is then made alone)."""
        try:
            await self._run([x for items, _ in calls for x in items])
        except Exception:  # noqa: BLE001 - made again one by one, each failure its caller's
            return False
        for _, fut in calls[1:]:
            _settle(fut, None)
        return True


def _settle(fut: asyncio.Future[None] | None, error: Exception | None) -> None:
    if fut is None or fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
