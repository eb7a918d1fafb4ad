"""Actions on PagerDuty's incident events (`actions:` in the rules; config.py): Slack,
Jira, Statuspage or any webhook, as durable work.

A verified webhook (POST /v1/pagerduty) queues one job per matching action in the store,
named by the action and the event's id: PagerDuty's retries of the delivery, and the same
event reaching two replicas, queue it once (store.add_job). The webhook is answered 2xx only
once its jobs are stored. A loop of its own, apart from the sender of PagerDuty's events,
claims due jobs under a lease (one replica runs each), runs them paced per target (Slack
and Statuspage take one request a second), and ends each: done (its id is remembered for
7 days), tried again with backoff or after the target's Retry-After, or dead with the
reason on a 4xx (`deadletter list` shows them). A job holds what its templates see, never
a secret: the action's settings and secrets are read from the rules when it runs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from proxy.actions.targets import Http, Result, run
from proxy.clock import Clock
from proxy.errors import StoreError
from proxy.ingest.pagerduty import IncidentEvent
from proxy.metrics import Metrics
from proxy.pacing import Pacer
from proxy.pdrest import incident_time
from proxy.redact import mask
from proxy.render import template_context
from proxy.rules import RuleSet
from proxy.rules.actions import Action
from proxy.rules.matchers import matches_all
from proxy.store import Store
from proxy.store.base import Job

__all__ = ["Actions", "incident_context"]

log = logging.getLogger("alert_proxy")
LEASE = 300.0  # a claimed job is another replica's again after this long
BATCH = 10  # jobs claimed at a time
TRIES = 25  # then a job that keeps failing is dead (about 2 h with the backoff below)
GAP = {"slack": 1.0, "statuspage": 1.0, "jira": 0.2}  # seconds between requests per target
ALERTS_KEPT = 50  # of a group's alerts, in what a job's templates see


def _words(seconds: float) -> str:
    s = int(max(0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def incident_context(ev: IncidentEvent, group_ctx: dict[str, Any] | None) -> dict[str, Any]:
    """What an action's templates see of an incident event (and of its group, if ours)."""
    data = ev.data or {}
    ref = data.get("incident") if isinstance(data.get("incident"), dict) else None
    src = ref or data

    def name(v: Any) -> str:
        return str(v.get("summary", "")) if isinstance(v, dict) else ""

    incident = {"id": ev.incident_id, "number": data.get("number"), "html_url": src.get("html_url", ""),
                "title": data.get("title") or name(ref) or "", "status": data.get("status") or ev.status,
                "urgency": data.get("urgency", ""), "service": name(data.get("service")),
                "priority": name(data.get("priority")), "incident_key": ev.incident_key or "",
                "created_at": data.get("created_at", ""),
                "assignees": ", ".join(name(x) for x in data.get("assignees") or [])}
    when = datetime.fromtimestamp(ev.occurred_at).astimezone().isoformat() if ev.occurred_at else ""
    event = {"id": ev.id, "type": ev.event_type, "occurred_at": when, "agent": ev.agent,
             "note": data.get("content", "") if data.get("type") == "incident_note" else ""}
    created = incident_time(incident["created_at"])
    ctx: dict[str, Any] = {"incident": incident, "event": event,
                           "duration": _words(ev.occurred_at - created) if created and ev.occurred_at else "",
                           "labels": {}, "group_labels": {}, "alerts": [], "num_firing": 0}
    if group_ctx:
        ctx.update({k: group_ctx[k] for k in ("labels", "group_labels", "num_firing") if k in group_ctx})
        ctx["alerts"] = list(group_ctx.get("alerts") or [])[:ALERTS_KEPT]
    return ctx


def matches(a: Action, ctx: dict[str, Any]) -> bool:
    inc = ctx["incident"]
    if a.labels and not matches_all(list(a.labels), ctx["labels"]):
        return False
    if any(str(inc.get(k) or "") != v for k, v in a.incident.items()):
        return False
    return a.title is None or bool(a.title.search(str(inc.get("title") or "")))


class Actions:
    def __init__(self, store: Store, rules: Callable[[], RuleSet], clock: Clock, metrics: Metrics) -> None:
        self.store, self.rules, self.clock, self.metrics = store, rules, clock, metrics
        self.http = Http()
        self._pacers: dict[str, Pacer] = {}  # per target

    def configured(self) -> bool:
        return bool(self.rules().actions)

    async def queue(self, ev: IncidentEvent) -> list[str]:
        """The jobs an incident event makes, stored (StoreError: not stored, the webhook
        gets a 503 and PagerDuty delivers it again). The names of the actions queued."""
        wanted = [a for a in self.rules().actions.values() if ev.event_type in a.on]
        if not wanted:
            return []
        group_ctx = None
        if ev.incident_key:
            g = await self.store.load(ev.incident_key)
            if g is not None:
                group_ctx = template_context(g, list(g.alerts.values()))
        ctx = incident_context(ev, group_ctx)
        now, queued = self.clock.now(), []
        for a in wanted:
            if matches(a, ctx):
                blob = orjson.dumps({"action": a.name, "ctx": ctx}).decode()
                if await self.store.add_job(Job(f"{a.name}:{ev.id}", blob), now):
                    queued.append(a.name)
                    self.metrics.actions.labels(a.name, "queued").inc()
        if queued:
            log.info("actions queued", extra={"fields": {"event_type": ev.event_type, "incident": ev.incident_id,
                                                         "actions": queued}})
        return queued

    async def step(self) -> None:
        """The loop's turn: run the due jobs, each target at its own pace."""
        jobs = await self.store.claim_jobs(self.clock.now(), LEASE, BATCH)
        if jobs:
            await asyncio.gather(*(self._one(j) for j in jobs))

    async def _one(self, job: Job) -> None:
        body = orjson.loads(job.blob)
        a = self.rules().actions.get(body["action"])
        ctx = body["ctx"]
        if a is None:
            result = Result("dead", f"the action {body['action']!r} is no longer in the rules")
        else:
            await self._turn(a.target)

            async def memo(key: str, value: str | None) -> str | None:
                return await self.store.memo(key, value, self.clock.now())

            try:
                result = await run(self.http, a, ctx, memo, job.id)
            except StoreError as e:
                result = Result("retry", f"store: {e}")
            except asyncio.CancelledError:  # shutting down: give it back rather than wait out
                with contextlib.suppress(Exception):  # its lease after the restart
                    await asyncio.wait_for(self.store.end_job(job, "retry", self.clock.now(),
                                                              due=self.clock.now()), 0.5)
                raise
            for secret in a.secrets:
                result.error = result.error.replace(secret, mask(secret))
        await self._end(job, body["action"], ctx, result)

    async def _turn(self, target: str) -> None:
        gap = GAP.get(target.split(" ")[0], 0.0)
        if gap:
            await self._pacers.setdefault(target, Pacer(gap)).turn()

    async def _end(self, job: Job, name: str, ctx: dict[str, Any], r: Result) -> None:
        now = self.clock.now()
        fields = {"action": name, "job": job.id, "event_type": ctx["event"]["type"],
                  "incident": ctx["incident"]["id"], "tries": job.tries + 1}
        how, limit = r.how, r.tries or TRIES
        if how == "retry" and job.tries + 1 >= limit:
            how, r.error = "dead", f"gave up after {limit} tries: {r.error}"
        if how == "done":
            await self.store.end_job(job, "done", now)
            log.info("action done", extra={"fields": {**fields, "result": r.error}})
        elif how == "retry":
            wait = min(3600.0, r.after) if r.after is not None else min(600.0, 2.0 ** (job.tries + 1))
            await self.store.end_job(Job(job.id, job.blob, job.tries + 1, r.error), "retry", now, due=now + wait)
            log.warning("action failed; trying again", extra={"fields": {**fields, "error": r.error,
                                                                          "in_s": round(wait, 1)}})
        else:
            await self.store.end_job(Job(job.id, job.blob, job.tries + 1, r.error), "dead", now)
            log.error("action dead-lettered", extra={"fields": {**fields, "error": r.error}})
        self.metrics.actions.labels(name, how).inc()

    async def dead(self) -> list[dict[str, Any]]:
        """The dead jobs as the outbox API and `deadletter list` show them (no secrets: a
        job holds none)."""
        out = []
        for j in await self.store.dead_jobs():
            body = orjson.loads(j.blob)
            out.append({"job": j.id, "action": body["action"], "event_type": body["ctx"]["event"]["type"],
                        "incident": body["ctx"]["incident"]["id"], "tries": j.tries, "error": j.error})
        return out

    async def close(self) -> None:
        await self.http.close()
