"""The batch engine of a flush: it claims due groups in batches (urgent lane first), has
the stages plan each batch (proxy/stages.py: the policy, none of it here), commits the
plans, and runs what follows each committed one.

Batches overlap, so that the store (Redis, or SQLite's process) always has the next
request at hand: while Python plans batch k, the store commits batch k-1 and claims
batches k+1 and k+2; batch k's commit is sent as soon as it is planned, before Python
looks at what batch k-1's commit answered. Commits are sent in order, and a batch once
claimed is planned and committed before `run` returns. The event loop is never held for a
whole batch: planning yields every few groups (every group when it holds hundreds of
alerts), what follows a commit every 20 groups, and each store call is an await. A claim
holds FLUSH_BATCH groups or FLUSH_ALERTS alerts at most (the first group whatever its
size), so that its load, one store call, stays short too. A group that changed meanwhile
(its version moved) is loaded, planned and committed again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from proxy.clock import Clock
from proxy.model import Group
from proxy.plan import Plan
from proxy.store import Store

__all__ = ["FLUSH_AHEAD", "FLUSH_ALERTS", "FLUSH_BATCH", "FLUSH_BUDGET", "FLUSH_LEASE", "Flusher",
           "Policy"]

FLUSH_LEASE = 10.0  # seconds a claimed group stays with the replica that claimed it
FLUSH_BATCH = 100  # groups claimed, planned and committed per store round trip, at most
# Alerts per claim, at most (past its first group): 100 groups of 1,000 alerts in one claim
# held the event loop (memory://) or SQLite's process ~0.8 s to load, and intake waited
# behind it (Events v2 p99 0.6 s in bench.run); 2,000 alerts load in ~15 ms.
FLUSH_ALERTS = 2000
FLUSH_AHEAD = 2  # claims under way while a batch is planned
# Seconds of one flush call. Each call starts with one claim alone and ends by waiting for
# its last commits, so the store idles at both ends of it; a longer call does that less
# often. The event loop is not held any longer for it (a flush yields every 20 groups),
# and the sender is woken by the first batch that enqueued, not at the end.
FLUSH_BUDGET = 0.25


class Policy(Protocol):
    """What a flush does with its groups (proxy/stages.py)."""

    def begin(self) -> None:
        """A flush starts."""

    async def plan(self, groups: Sequence[Group], now: float) -> list[Plan]:
        """The batch's plans, in its order."""

    def follow(self, plan: Plan) -> None:
        """The plan is committed: what it starts, what it counts."""

    async def end(self) -> None:
        """The flush's commits are all settled."""


_Claim = tuple[float, "asyncio.Task[list[Group]]"]
_Sending = tuple[list[Plan], "asyncio.Task[list[bool]]"]


class Flusher:
    def __init__(self, store: Store, clock: Clock, policy: Policy,
                 on_enqueue: Callable[[], None]) -> None:
        self.store, self.clock, self.policy = store, clock, policy
        self.on_enqueue = on_enqueue  # the sender's wake-up call
        self.behind = False  # see run

    def _claim(self, now: float) -> Awaitable[list[Group]]:
        return self.store.claim_due(now, lease=FLUSH_LEASE, limit=FLUSH_BATCH, alerts=FLUSH_ALERTS)

    @staticmethod
    def _full(groups: list[Group]) -> bool:
        """A claim that reached either bound: more groups may be due. (One cut short by a
        large next group and holding under half the alerts looks done; that group waits
        for the next poll.)"""
        return len(groups) >= FLUSH_BATCH or sum(len(g.alerts) for g in groups) >= FLUSH_ALERTS // 2

    async def run(self, budget_s: float = FLUSH_BUDGET) -> int:
        """Flush the groups that are due, in batches, for about `budget_s`; returns how many
        events were enqueued. `behind` then says whether groups may still be due (the
        budget ended a full batch): the caller goes on at once instead of waiting for its
        next poll. The sender is woken once the first batch that enqueued is settled, and
        again at the end."""
        t0 = time.monotonic()
        sent = woken = 0
        self.behind = False
        self.policy.begin()
        now = self.clock.now()
        groups = await self._claim(now)
        claims: deque[_Claim] = deque()
        commits: deque[_Sending] = deque()
        try:
            while groups or claims:
                if not groups:  # an empty claim: the next one was sent already, and it may
                    # hold groups that came due since (they would wait out their lease)
                    now, claiming = claims.popleft()
                    groups = await claiming
                    continue
                if self._full(groups) and not self.behind:  # (a store in partitions claims
                    # up to a batch from each)
                    self._claim_ahead(claims, t0, budget_s)
                    await asyncio.sleep(0)  # the claims are sent before Python plans
                plans = await self.policy.plan(groups, now)
                commits.append((plans, asyncio.create_task(self._send(plans))))
                await asyncio.sleep(0)  # the commit is on its way
                while len(commits) > 1:
                    sent += await self._settle(*commits.popleft())
                if sent and not woken:
                    self.on_enqueue()
                    woken = sent
                groups = []
                if claims:
                    now, claiming = claims.popleft()
                    groups = await claiming
            while commits:
                sent += await self._settle(*commits.popleft())
        finally:
            await self._abandon(claims, commits)
        await self.policy.end()
        if sent > woken:
            self.on_enqueue()
        return sent

    def _claim_ahead(self, claims: deque[_Claim], t0: float, budget_s: float) -> None:
        while len(claims) < FLUSH_AHEAD:
            if time.monotonic() - t0 > budget_s:
                self.behind = True
                return
            later = self.clock.now()
            claims.append((later, asyncio.ensure_future(self._claim(later))))

    async def _abandon(self, claims: deque[_Claim], commits: deque[_Sending]) -> None:
        """After a failure or a cancel: the commits under way end, the claims are dropped
        (their groups are flushed again when their lease ends); what follows the commits
        that went in still happens."""
        for _, claiming in claims:
            claiming.cancel()
        pending = [*(t for _, t in commits), *(t for _, t in claims)]
        if pending:
            await asyncio.wait(pending)
            for task in pending:
                if not task.cancelled():
                    task.exception()  # seen here (the first failure is the one raised)
        for plans, task in commits:
            if not task.cancelled() and task.exception() is None:
                with contextlib.suppress(Exception):  # the first failure is the one raised
                    await self._settle(plans, task)

    async def _send(self, plans: list[Plan]) -> list[bool]:
        """Commit a batch's plans: which went in. A remediation claimed is synced (it is
        made once, even after a power loss); a flush alone need not be (store.base)."""
        durable = any(p.call is not None for p in plans)
        return await self.store.commit([p.commit for p in plans], durable=durable)

    async def _settle(self, plans: list[Plan], sending: asyncio.Task[list[bool]]) -> int:
        """After a batch's commit: what follows each plan that went in; a group that
        changed meanwhile is loaded, planned and committed again."""
        sent = 0
        done = await sending
        for _ in range(10):
            retry = []
            for i, (plan, ok) in enumerate(zip(plans, done, strict=True), 1):
                if ok:
                    sent += len(plan.events)
                    self.policy.follow(plan)
                else:
                    retry.append(plan.group.key)
                if i % 20 == 0:
                    await asyncio.sleep(0)
            if not retry:
                break
            now = plans[0].now
            plans = await self.policy.plan(await self.store.load_many(retry), now)
            done = await self._send(plans)
        return sent
