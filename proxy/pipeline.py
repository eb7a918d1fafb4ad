"""The stage order, in one place. No HTTP here: app.py parses requests and calls in.

    accept(alerts)  rules.place (match, route, drop) -> store.record (windows, atomically)
    flush_due()     store.claim_due -> mute (inhibit, maintenance) -> correlate.decide
                    -> render -> store.commit (group state + outbox, atomically)
    (sender.py)     outbox -> budget -> PagerDuty

An Events v2 event enters through `accept_event`: a trigger is an alert like any other;
an acknowledge or resolve follows up on the groups that hold its dedup_key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from proxy import correlate, logs, render, storm
from proxy.clock import Clock
from proxy.errors import StoreError
from proxy.ingest import events_v2
from proxy.ingest.fields import is_time
from proxy.ingest.pagerduty import INCIDENT_EVENTS, IncidentEvent
from proxy.metrics import Metrics
from proxy.model import Action, Alert, Flush, Group, GroupAlert, OutEvent
from proxy.remediate import Call, Caller, HttpCaller
from proxy.rules import RuleSet
from proxy.rules.engine import STORM_RULE, own_identity_key
from proxy.rules.schema import Rule
from proxy.stats import Tally
from proxy.store import Commit, Entry, Resolved, Store

__all__ = ["Pipeline"]

log = logging.getLogger("alert_proxy")
FLUSH_LEASE = 10.0  # seconds a claimed group stays with the replica that claimed it
FLUSH_BATCH = 100  # groups claimed, decided and committed per store round trip
FLUSH_AHEAD = 2  # claims under way while a batch is decided
# Seconds of one flush call. Each call starts with one claim alone and ends by waiting for
# its last commits, so the store idles at both ends of it; a longer call does that less
# often (bench/RESULTS.md, seventh pass). The event loop is not held any longer for it (a
# flush yields every 20 groups), and the sender is woken by the first batch that
# enqueued, not at the end.
FLUSH_BUDGET = 0.25
# Entries recorded per store call: a request of more alerts (one body of 8,000 items) is
# recorded in parts, so that memory:// never holds the event loop for all of it at once.
# A part that fails is answered 503 like a whole request; what parts before it recorded is
# recorded again, unchanged, when the sender retries.
RECORD_PART = 1000


class Pipeline:
    def __init__(self, rules: RuleSet, store: Store, clock: Clock, metrics: Metrics,
                 on_enqueue: Callable[[], None] = lambda: None,
                 caller: Caller | None = None, tally: Tally | None = None,
                 max_groups: int = 1_000_000) -> None:
        self.rules, self.store, self.clock, self.metrics = rules, store, clock, metrics
        self.tally = tally or Tally()  # the noise figures (stats.py)
        self.max_groups = max_groups
        self.on_enqueue = on_enqueue  # the sender's wake-up call
        self.caller: Caller = caller or HttpCaller()
        self.folding = storm.Folding()
        self._calls: set[asyncio.Task[None]] = set()  # remediation calls under way
        self._flushes: dict[str, Any] = {}  # label -> its counter (labels() costs per call)
        self.behind = False  # see flush_due

    # -- in --------------------------------------------------------------------------
    async def accept(self, alerts: Sequence[Alert]) -> None:
        """Rules, then the windows: the alerts are in the store when this returns.

        One store call per request, or per RECORD_PART alerts of a larger one. Firing
        alerts go to the groups their rules choose; resolved alerts go to every
        open group that holds them, whatever the rules say now (a drop, a reload or a
        maintenance window never swallows a resolve). A resolved alert also names the
        groups today's rules would put it in, with their resolve: if the store lost them
        (a restart of memory://), PagerDuty still hears the resolve."""
        rules = self.rules
        now = self.clock.now()
        entries: list[Entry] = []
        resolved: list[Resolved] = []
        marks: list[tuple[str, str]] = []
        counts: defaultdict[str, float] = defaultdict(float)
        bad_times: list[str] = []
        for i, alert in enumerate(alerts):
            if i % 250 == 249:
                await asyncio.sleep(0)  # thousands of alerts in one request: others get a turn
            if alert.starts_at and not is_time(alert.starts_at):
                bad_times.append(alert.starts_at)  # PagerDuty would refuse the page for it
                alert.starts_at = ""
            if alert.status == "resolved":
                resolved.append(Resolved(alert.fingerprint, GroupAlert(alert, "error").to_json(),
                                         bool(alert.labels), self._candidates(alert, now)))
                continue
            if rules.inhibit:
                marks += [(m, alert.fingerprint) for m in rules.source_marks(alert.labels)]
            placements, reason = rules.place(alert)
            labels = alert.labels
            counts["in_alertname|" + labels.get("alertname", "-")] += 1
            if reason:
                self.metrics.suppressed.labels(reason).inc()
                counts["suppressed|" + reason] += 1
            else:
                counts["in_rule|" + placements[0].rule.name] += 1
                counts["in_service|" + placements[0].alert.labels.get("service", "-")] += 1
            for p in placements:
                r = p.rule
                entries.append(Entry(
                    group_key=p.group_key, meta=p.group_meta(), fingerprint=alert.fingerprint,
                    alert_json=GroupAlert(p.alert, p.severity).to_json(), group_wait=r.group_wait,
                    group_interval=r.group_interval,
                    resolve_wait=r.group_interval if r.resolve_wait is None else r.resolve_wait,
                    max_alerts=r.max_alerts, urgent=p.severity == "critical"))
        lost = 0
        for i in range(0, max(len(entries), len(resolved), 1), RECORD_PART):
            if i:
                await asyncio.sleep(0)
            lost += await self.store.record(entries[i:i + RECORD_PART], resolved[i:i + RECORD_PART],
                                            now, marks if not i else (), self.max_groups)
        if lost:
            self.on_enqueue()  # the resolve of a group the store had lost
        if bad_times:
            self.metrics.fields_dropped.labels("starts_at").inc(len(bad_times))
            log.warning("alert start times that are not ISO 8601 were left out", extra={"fields": {
                "source": alerts[0].source, "alerts": len(bad_times), "first": bad_times[0][:100]}})
        if alerts:
            self.metrics.alerts_received.labels(alerts[0].source).inc(len(alerts))
            counts["in|" + alerts[0].source] += len(alerts)
            self.tally.merge(counts, now)

    def _candidates(self, alert: Alert, now: float) -> list[tuple[str, OutEvent]]:
        """Where a resolved alert's resolve goes when no open group holds it. A durable store
        never loses a group: a resolve for one it does not hold is for something PagerDuty
        never saw (an alert that never paged, a source's "ok" for something never sent), and
        only an Events v2 resolve passes through as it is (its sender may have triggered the
        key at PagerDuty directly). memory:// forgets its groups at a restart: there, the
        groups today's rules would put the alert in get their resolve too, in case they paged
        before it."""
        lossy = self.store.url.startswith("memory://")
        if alert.labels:
            if not lossy:
                return []
            placements, _ = self.rules.place(alert)
            return [(p.group_key, render.followup_event(p.routing_key, p.group_key, "resolve", now,
                                                        p.key_name)) for p in placements]
        if alert.routing_key and alert.dedup_key:  # an Events v2 resolve: the key is all it has
            keys = self._own_keys(alert.routing_key, alert.dedup_key, alert.fingerprint, "resolve", now)
            return keys if lossy else keys[1:]
        return []

    @staticmethod
    def _own_keys(rk: str, dk: str, fp: str, action: Action, now: float) -> list[tuple[str, OutEvent]]:
        """The follow-ups of an Events v2 dedup_key no open group holds: to the group it
        would have opened (its own identity), and as it is (it may predate the proxy)."""
        own = own_identity_key(rk, fp)
        return [(own, render.followup_event(rk, own, action, now)),
                (fp, render.followup_event(rk, dk, action, now))]

    async def accept_event(self, ev: events_v2.Event) -> None:
        """An Events v2 event: a trigger or a resolve is an alert; an acknowledge follows
        up on the groups that hold its dedup_key."""
        if ev.alert is not None:
            await self.accept([ev.alert])
            return
        now = self.clock.now()
        fp = events_v2.fingerprint(ev.routing_key, ev.dedup_key)
        groups = await self.store.groups_of(fp)
        if groups:
            events = [render.followup_event(g.routing_key, g.key, "acknowledge", now, g.key_name)
                      for g in groups if g.triggered]
        else:
            events = [e for _, e in self._own_keys(ev.routing_key, ev.dedup_key, fp, "acknowledge", now)]
        self.metrics.alerts_received.labels("events_v2").inc()
        await self.enqueue(events)

    async def change(self, body: dict[str, Any], seq_hint: int) -> None:
        """A change event: straight to the outbox, no grouping."""
        await self.enqueue([render.change_event(body, self.clock.now(), seq_hint)])

    async def enqueue(self, events: Sequence[OutEvent]) -> None:
        await self.store.enqueue(events)
        self.on_enqueue()

    # -- the windows -------------------------------------------------------------------
    async def muted(self, groups: Sequence[Group], now: float) -> dict[str, dict[str, str]]:
        """For each group, its firing alerts that must not page now, with the reason
        (maintenance, inhibited); one store call for the inhibition marks of the batch."""
        rules = self.rules
        out: dict[str, dict[str, str]] = {}
        if not rules.maintenance and not rules.inhibit:
            return out
        wanted: dict[tuple[str, str], list[str]] = {}
        for g in groups:
            for fp, a in g.alerts.items():
                if not a.firing:
                    continue
                if rules.in_maintenance(a.labels, now, g.rule):
                    out.setdefault(g.key, {})[fp] = "maintenance"
                elif marks := rules.target_marks(a.labels):
                    wanted[(g.key, fp)] = marks
        if wanted:
            sources = await self.store.marked(sorted({m for ms in wanted.values() for m in ms}))
            for (key, fp), ms in wanted.items():
                if any(sources.get(m, set()) - {fp} for m in ms):
                    out.setdefault(key, {})[fp] = "inhibited"
        return out

    async def flush_due(self, budget_s: float = FLUSH_BUDGET) -> int:
        """Flush the groups that are due, in batches (urgent lane first), for about
        `budget_s`; returns how many events were enqueued. `behind` then says whether
        groups may still be due (the budget ended a full batch): the flush loop goes on at
        once instead of waiting for its next poll.

        Batches overlap, so that the store (Redis, or SQLite's thread) always has the next
        request at hand: while Python decides batch k, the store commits batch k-1 and
        claims batches k+1 and k+2; batch k's commit is sent as soon as it is decided,
        before Python looks at what batch k-1's commit answered. Commits are sent in
        order, and a batch once claimed is decided and committed before this returns.
        The event loop is never held for a whole batch: deciding and the work after a
        commit yield every 20 groups, and each store call is an await. The sender is woken
        once the first batch that enqueued is settled, and again at the end."""
        t0 = time.monotonic()
        sent = woken = 0
        self.behind = False
        self.folding.begin()
        now = self.clock.now()
        groups = await self.store.claim_due(now, lease=FLUSH_LEASE, limit=FLUSH_BATCH)
        claims: deque[tuple[float, asyncio.Task[list[Group]]]] = deque()
        commits: deque[tuple[list[_Plan], float, asyncio.Task[list[bool]]]] = deque()
        try:
            while groups or claims:
                if not groups:  # an empty claim: the next one was sent already, and it may
                    # hold groups that came due since (they would wait out their lease)
                    now, claiming = claims.popleft()
                    groups = await claiming
                    continue
                if len(groups) == FLUSH_BATCH and not self.behind:
                    while len(claims) < FLUSH_AHEAD:
                        if time.monotonic() - t0 > budget_s:
                            self.behind = True
                            break
                        later = self.clock.now()
                        claims.append((later, asyncio.create_task(
                            self.store.claim_due(later, lease=FLUSH_LEASE, limit=FLUSH_BATCH))))
                    await asyncio.sleep(0)  # the claims are sent before Python decides
                plans = await self._decide(groups, now)
                commits.append((plans, now, asyncio.create_task(self._send(plans))))
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
        finally:  # a failure or a cancel: the commits under way end, the claims are dropped
            # (their groups are flushed again when their lease ends)
            for _, claiming in claims:
                claiming.cancel()
            pending = [*(t for _, _, t in commits), *(t for _, t in claims)]
            if pending:
                await asyncio.wait(pending)
                for task in pending:
                    if not task.cancelled():
                        task.exception()  # seen here (the first failure is the one raised)
            for plans, at, task in commits:  # committed after the one that failed: what
                # follows them (calls, storm records, metrics, logs) still happens
                if not task.cancelled() and task.exception() is None:
                    with contextlib.suppress(Exception):  # the first failure is the one raised
                        await self._settle(plans, at, task)
        # the storms' figures: once per storm and flush, whatever its size (and again at
        # the next flush if the store failed now)
        await self.folding.apply(self.store, self.clock.now(), self.rules.rule(STORM_RULE))
        if sent > woken:
            self.on_enqueue()
        return sent

    async def _decide(self, groups: list[Group], now: float) -> list[_Plan]:
        """Plan a batch; it yields every few groups, so that the claims under way send
        their second step (the load) while Python decides."""
        muted = await self.muted(groups, now)
        views = await self.folding.views(self.store, groups) if self.rules.defaults.storm else {}
        plans = []
        for i, g in enumerate(groups, 1):
            plans.append(self._plan(g, now, muted.get(g.key, {}), views))
            if i % 20 == 0:
                await asyncio.sleep(0)
        return plans

    async def _send(self, plans: list[_Plan]) -> list[bool]:
        """Commit a batch's plans: which went in (a group that changed meanwhile did not)."""
        durable = any(p.call is not None for p in plans)  # a remediation claimed: once, even after a power loss
        return await self.store.commit([p.commit for p in plans], durable=durable)

    async def _settle(self, plans: list[_Plan], now: float, sending: asyncio.Task[list[bool]]) -> int:
        """After a batch's commit: what follows each plan that went in; a group that
        changed meanwhile is loaded, decided and committed again."""
        sent = 0
        done = await sending
        for _ in range(10):
            retry = []
            for i, (plan, ok) in enumerate(zip(plans, done, strict=True), 1):
                if ok:
                    sent += len(plan.commit.events)
                    if plan.call is not None:
                        self._start_call(plan.commit.group.key, plan.call)
                    if plan.storm is not None:
                        self.folding.note(plan.storm)
                    self._account(plan, now)
                else:
                    retry.append(plan.commit.group.key)
                if i % 20 == 0:
                    await asyncio.sleep(0)
            if not retry:
                break
            groups = await self.store.load_many(retry)
            plans = await self._decide(groups, now)
            done = await self._send(plans)
        return sent

    def _plan(self, g: Group, now: float, muted: dict[str, str],
              views: dict[str, storm.Figures | None]) -> _Plan:
        """One group: what it sends now, and its next state."""
        rules = self.rules
        rule = rules.rule(g.rule)
        held_before = g.state.get("held", "")
        cfg = rules.defaults.storm
        if g.rule == STORM_RULE:
            f, page = storm.decide(g, rule, cfg.within if cfg else 0.0, now)
        else:
            f, page = correlate.decide(g, rule, now, muted)
        plan = _Plan(Commit(g, f.delete, []), f, page, held_before, dict(muted))
        if rule.remediate and page.why == "first" and "remediation" not in g.state:
            self._remediate_first(plan, rule, now)
        summary = None
        if g.rule == STORM_RULE:
            extra = storm.details(g)
            summary = storm.summary(g)
            if "trigger" in f.actions:
                storm.paged(g)
        else:
            plan.held_now, plan.storm = self.folding.member(g, f, page, rule, cfg, views, now)
            extra = correlate.page_details(g, page, muted)
        if g.state.get("unfolded"):
            extra["after_storm"] = True
        plan.commit.events = [
            render.trigger_event(g, rule, now, muted, extra, summary) if action == "trigger"
            else render.followup_event(g.routing_key, g.key, "resolve", now, g.key_name)
            for action in f.actions]
        correlate.apply(g, f, page, now, rule)
        return plan

    def _suppressed(self, reason: str, n: int, now: float) -> None:
        self.metrics.suppressed.labels(reason).inc(n)
        self.tally.add("suppressed|" + reason, n, now)

    # -- remediation before paging -----------------------------------------------------------
    def _remediate_first(self, plan: _Plan, rule: Rule, now: float) -> None:
        """The group would page for the first time: claim its remediation call instead
        (the commit is version-checked, so one replica only makes it) and hold the page
        for the rule's `wait`."""
        r = rule.remediate
        assert r is not None
        g = plan.commit.group
        ctx = render.template_context(g, list(g.alerts.values()))
        plan.call = Call(url=r.url.render(ctx), method=r.method,
                         headers={k: t.render(ctx) for k, t in r.headers.items()},
                         body=r.body.render(ctx) if r.body else None, timeout=r.timeout,
                         secrets=r.secrets)
        plan.flush.actions = []
        plan.flush.next_due = now + r.wait
        plan.page.why, plan.page.held = "", "remediation"
        g.state["remediation"] = {"called_at": now, "until": now + r.wait}

    async def _call(self, key: str, call: Call) -> None:
        """Make the call; record its outcome on the group (a failure pages at once)."""
        outcome = await self.caller(call)
        self.metrics.remediations.labels(outcome.outcome).inc()
        log.info("remediation called", extra={"fields": {"dedup_key": key, **outcome.to_dict()}})
        for _ in range(10):
            g = await self.store.load(key)
            if g is None or "remediation" not in g.state:
                return  # resolved (remediated) or gone meanwhile
            g.state["remediation"].update(outcome.to_dict())
            if outcome.outcome != "ok":
                g.due = self.clock.now()
            if (await self.store.commit([Commit(g, False, [])]))[0]:
                if outcome.outcome != "ok":
                    self.on_enqueue()
                return

    async def settle(self) -> None:
        """Wait for the remediation calls under way (rule tests, shutdown)."""
        while self._calls:
            await asyncio.gather(*list(self._calls), return_exceptions=True)

    # -- PagerDuty's side ------------------------------------------------------------------
    async def incident(self, ev: IncidentEvent) -> str:
        """A PagerDuty incident event (webhooks v3) for one of our dedup_keys updates its
        group: acknowledged (no repeat while acknowledged), unacknowledged, resolved by a
        person (the alerts firing then do not page again; a new one or a re-fire does),
        reopened. Returns the verdict, a metric label: applied, duplicate, stale (older
        than what the group knows), foreign (a key we did not send, or closed), ignored."""
        if ev.event_type not in INCIDENT_EVENTS:
            return "ignored"
        if not ev.incident_key:
            return "foreign"
        for _ in range(10):
            g = await self.store.load(ev.incident_key)
            if g is None:
                return "foreign"
            pd = dict(g.state.get("pd") or {})
            if pd.get("event") == ev.id:
                return "duplicate"
            if ev.occurred_at < float(pd.get("at", 0.0)):
                return "stale"
            status = {"incident.acknowledged": "acknowledged", "incident.resolved": "resolved"}.get(
                ev.event_type, "triggered")
            pd.update(status=status, at=ev.occurred_at, event=ev.id, incident=ev.incident_id,
                      by=ev.agent)
            pd.pop("firing", None)
            first_page = float(g.state.get("first_page_at", 0.0))
            if status == "acknowledged" and "acknowledged_at" not in pd:
                pd["acknowledged_at"] = ev.occurred_at
                if first_page:
                    took = max(0.0, ev.occurred_at - first_page)
                    self.metrics.time_to_ack.observe(took)
                    self.tally.merge({"tta_sum": took, "tta_n": 1}, ev.occurred_at)
            if status == "resolved":
                pd["firing"] = sorted(fp for fp, a in g.alerts.items() if a.firing)
                if first_page and "resolved_at" not in pd:
                    took = max(0.0, ev.occurred_at - first_page)
                    self.metrics.time_to_resolve.observe(took)
                    self.tally.merge({"ttr_sum": took, "ttr_n": 1}, ev.occurred_at)
                pd["resolved_at"] = ev.occurred_at
            g.state["pd"] = pd
            if (await self.store.commit([Commit(g, False, [])]))[0]:
                log.info("PagerDuty incident event applied", extra={"fields": {
                    "dedup_key": g.key, "event_type": ev.event_type, "incident": ev.incident_id,
                    "by": ev.agent}})
                return "applied"
        raise StoreError("the group kept changing while a PagerDuty event was applied")

    def _start_call(self, key: str, call: Call) -> None:
        """Once a plan that claimed a remediation is committed: make the call."""
        task = asyncio.create_task(self._call(key, call))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    def _account(self, plan: _Plan, now: float) -> None:
        """Once a plan is committed: its metrics, counts and log line."""
        c, f, page = plan.commit, plan.flush, plan.page
        g = c.group
        label = "/".join(f.actions) or ("transient" if f.delete else "none")
        counter = self._flushes.get(label)
        if counter is None:
            counter = self._flushes[label] = self.metrics.flushes.labels(label)
        counter.inc()
        held = plan.held_now or page.held
        if held and held != plan.held_before and held in SUPPRESSED:
            n = len(page.flapping) if held == "flapping" else len(g.alerts)
            self._suppressed(held, n, now)
        if held == "muted" and plan.held_before != "muted":
            for reason in plan.muted.values():
                self._suppressed(reason, 1, now)
        if "trigger" in f.actions and g.rule != STORM_RULE:
            service = g.group_labels.get("service") or next(
                (a.labels.get("service", "") for a in g.alerts.values() if a.firing), "") or "-"
            counts = {"page|" + (page.why or "first"): 1.0, "page_rule|" + g.rule: 1.0,
                      "page_service|" + service: 1.0}
            if page.why == "first" and g.state.get("first_page_at") == now:
                counts.update(ttp_sum=now - g.opened_at, ttp_n=1.0)
            self.tally.merge(counts, now)
        elif "trigger" in f.actions:
            self.tally.add("page|storm", 1, now)
        if c.events or held in ("folded", "flapping") and held != plan.held_before:
            logs.info(log, "group flushed", {
                "dedup_key": g.key, "group": render.group_name(g), "rule": g.rule,
                "key": g.key_name, "actions": f.actions,
                "why": page.why or None, "held": held or None, "firing": len(g.firing()),
                "alerts": len(g.alerts)})


SUPPRESSED = ("transient", "flapping", "folded", "remediated")


@dataclass(slots=True)
class _Plan:
    """A group's flush before it is committed, and what follows once it is."""

    commit: Commit
    flush: Flush
    page: correlate.Page
    held_before: str
    muted: dict[str, str]
    held_now: str = ""
    storm: storm.Delta | None = None  # its change of its storm's figures (a fold, an unfold)
    call: Call | None = None  # the remediation this flush claimed
