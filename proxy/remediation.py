"""Remediation before paging, as a flush stage: a group whose rule has `remediate:` and
that would page for the first time claims its call instead, and its page waits for the
rule's `wait`. The claim is committed with the group (version-checked: of several
replicas one calls, and a restart during `wait` neither forgets the page nor calls
again); the call is made once the claim is committed (`start`), and its outcome is
recorded on the group (a failure pages at once). If the group resolves within `wait`,
nobody is paged: `remediated`. The call itself: remediate.py."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from proxy import render
from proxy.clock import Clock
from proxy.metrics import Metrics
from proxy.model import Group
from proxy.plan import Plan
from proxy.remediate import Call, Caller
from proxy.state import Remediation
from proxy.store import Commit, Store

__all__ = ["Remediations"]

log = logging.getLogger("alert_proxy")


class Remediations:
    def __init__(self, store: Store, clock: Clock, metrics: Metrics, caller: Caller,
                 on_enqueue: Callable[[], None]) -> None:
        self.store, self.clock, self.metrics, self.caller = store, clock, metrics, caller
        self.on_enqueue = on_enqueue
        self.calls: set[asyncio.Task[None]] = set()  # under way

    @staticmethod
    def hold(plan: Plan) -> None:
        """The stage: claim the call of a first page, or keep the page waiting for it."""
        g, f, page, now = plan.group, plan.flush, plan.page, plan.now
        remedy, r = g.state.remediation, plan.rule.remediate
        if page.held == "transient" and remedy is not None:
            page.held = "remediated"  # it resolved while the fix ran: nobody is paged
            return
        if page.why != "first" or g.triggered or r is None:
            return
        if remedy is None:  # claim the call: made once this plan is committed
            ctx = render.template_context(g, list(g.alerts.values()))
            plan.call = Call(url=r.url.render(ctx), method=r.method,
                             headers={k: t.render(ctx) for k, t in r.headers.items()},
                             body=r.body.render(ctx) if r.body else None, timeout=r.timeout,
                             secrets=r.secrets)
            g.state.remediation = remedy = Remediation(called_at=now, until=now + r.wait)
        if remedy.outcome in ("", "ok") and now < remedy.until:
            f.actions, f.next_due = [], min(f.next_due, remedy.until)
            page.why, page.held = "", "remediation"

    @staticmethod
    def details(g: Group) -> dict[str, object]:
        """What a page that waited for a fix says of it (custom_details.remediation)."""
        remedy = g.state.remediation
        if remedy is None or g.triggered:
            return {}
        if not remedy.outcome:  # no answer recorded: the proxy restarted during the call
            return {"remediation": {"called_at": remedy.called_at, "outcome": "unknown",
                                    "answer": "no answer was recorded (the proxy restarted "
                                              "during the call)"}}
        return {"remediation": {"called_at": remedy.called_at, "http_status": remedy.http_status,
                                "outcome": "not fixed" if remedy.outcome == "ok" else remedy.outcome,
                                "seconds": remedy.seconds, "answer": remedy.answer}}

    def start(self, key: str, call: Call) -> None:
        """The claim is committed: make the call."""
        task = asyncio.create_task(self._call(key, call))
        self.calls.add(task)
        task.add_done_callback(self.calls.discard)

    async def _call(self, key: str, call: Call) -> None:
        outcome = await self.caller(call)
        self.metrics.remediations.labels(outcome.outcome).inc()
        log.info("remediation called", extra={"fields": {"dedup_key": key, **outcome.to_dict()}})
        for _ in range(10):
            g = await self.store.load(key)
            if g is None or g.state.remediation is None:
                return  # resolved (remediated) or gone meanwhile
            remedy = g.state.remediation
            remedy.outcome, remedy.http_status = outcome.outcome, outcome.http_status
            remedy.seconds, remedy.answer = round(outcome.seconds, 3), outcome.answer
            if outcome.outcome != "ok":
                g.due = self.clock.now()
            if (await self.store.commit([Commit(g, False, [])]))[0]:
                if outcome.outcome != "ok":
                    self.on_enqueue()
                return

    async def settle(self) -> None:
        """Wait for the calls under way (rule tests, shutdown)."""
        while self.calls:
            await asyncio.gather(*list(self.calls), return_exceptions=True)
