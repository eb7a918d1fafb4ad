"""The proxy's path, from what senders post to what PagerDuty gets. No HTTP here: app.py
parses requests and calls in.

    accept(alerts)   rules.place (match, route, drop) -> store.record (windows, atomically);
                     HTTP requests come in through accept_shared: the small requests of one
                     turn of the event loop share one call (together.py)
    flush_due()      flush.Flusher: claim due groups -> stages.Stages, in order: mute,
                     decide, remediate, fold, incident, render, advance -> store.commit
                     (group state + outbox, atomically) -> follow
    (sender.py)      outbox -> budget -> PagerDuty
    incident(event)  PagerDuty's webhooks, back into the groups (incidents.py)

An Events v2 event enters through `accept_event`: a trigger is an alert like any other;
an acknowledge or resolve follows up on the groups that hold its dedup_key.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from prometheus_client import Counter as Metric

from proxy import render
from proxy.clock import Clock
from proxy.flush import FLUSH_BUDGET, Flusher
from proxy.heartbeats import Heartbeats
from proxy.incidents import Incidents
from proxy.ingest import events_v2
from proxy.ingest.fields import is_time
from proxy.ingest.pagerduty import IncidentEvent
from proxy.jsontypes import JsonObject
from proxy.metrics import Metrics
from proxy.model import Action, Alert, GroupAlert, OutEvent
from proxy.remediate import Caller, HttpCaller
from proxy.remediation import Remediations
from proxy.rules import RuleSet
from proxy.rules.engine import SUPPRESS_REASONS, own_identity_key
from proxy.rules.types import Heartbeat
from proxy.silences import Silences
from proxy.stages import Stages
from proxy.stats import Tally
from proxy.store import Entry, Resolved, Store
from proxy.together import Together

__all__ = ["Pipeline"]

log = logging.getLogger("alert_proxy")
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
        self._received: dict[str, Metric] = {}  # source -> its alerts_received child (labels() locks)
        self.on_enqueue = on_enqueue  # the sender's wake-up call
        self.remediations = Remediations(store, clock, metrics, caller or HttpCaller(),
                                         lambda: self.on_enqueue())
        self.incidents = Incidents(store, metrics, self.tally)
        self.silences = Silences(store, clock)
        self.heartbeats = Heartbeats(store, clock, lambda: self.rules, lambda: self.on_enqueue())
        self.stages = Stages(lambda: self.rules, store, clock, metrics, self.tally,
                             self.remediations, self.incidents, self.silences)
        self.flusher = Flusher(store, clock, self.stages, lambda: self.on_enqueue())
        self._together: Together[Alert] = Together(self.accept)

    # -- in --------------------------------------------------------------------------
    async def accept_shared(self, alerts: Sequence[Alert]) -> None:
        """`accept`, in one call with the other requests of the same source that reach it
        in the same turn of the event loop (together.py)."""
        if alerts:
            await self._together(alerts[0].source, alerts)

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
        beats: dict[str, Heartbeat] = {}
        names: list[str] = []  # (counted once at the end: Counter counts in C)
        placed: list[tuple[str, str]] = []  # (rule, service) of each alert placed
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
            if rules.heartbeats and (hb := rules.heartbeat_of(alert.labels)) is not None:
                beats[hb.name] = hb  # an arrival; the alert itself never pages
                continue
            if rules.inhibit:
                marks += [(m, alert.fingerprint) for m in rules.source_marks(alert.labels)]
            placements, reason = rules.place(alert)
            names.append(alert.labels.get("alertname", "-"))
            if reason:
                counts["suppressed|" + reason] += 1
            else:
                placed.append((placements[0].rule.name, placements[0].alert.labels.get("service", "-")))
            for p in placements:
                r = p.rule
                entries.append(Entry(
                    group_key=p.group_key, meta=p.meta, fingerprint=alert.fingerprint,
                    alert_json=GroupAlert(p.alert, p.severity).to_json(), group_wait=r.group_wait,
                    group_interval=r.group_interval,
                    resolve_wait=r.group_interval if r.resolve_wait is None else r.resolve_wait,
                    max_alerts=r.max_alerts, urgent=p.severity == "critical"))
        for name, times in Counter(names).items():
            counts["in_alertname|" + name] += times
        for (rule, service), times in Counter(placed).items():
            counts["in_rule|" + rule] += times
            counts["in_service|" + service] += times
        for hb in beats.values():
            await self.heartbeats.seen(hb, now)
        lost = fired = gone = 0
        for i in range(0, max(len(entries), len(resolved), 1), RECORD_PART):
            if i:
                await asyncio.sleep(0)
            done = await self.store.record(entries[i:i + RECORD_PART], resolved[i:i + RECORD_PART],
                                           now, marks if not i else (), self.max_groups)
            lost, fired, gone = lost + done.lost, fired + done.fired, gone + done.resolved
        for reason in SUPPRESS_REASONS:  # (once recorded: a shared call that failed is made again)
            if n := counts.get("suppressed|" + reason):
                self.metrics.suppressed.labels(reason).inc(n)
        counts["fired"] += fired  # transitions, apart from deliveries (in|<source>)
        counts["resolved"] += gone
        if lost:
            self.on_enqueue()  # the resolve of a group the store had lost
        if bad_times:
            self.metrics.fields_dropped.labels("starts_at").inc(len(bad_times))
            log.warning("alert start times that are not ISO 8601 were left out", extra={"fields": {
                "source": alerts[0].source, "alerts": len(bad_times), "first": bad_times[0][:100]}})
        if alerts:
            src = alerts[0].source
            child = self._received.get(src)
            if child is None:
                child = self._received[src] = self.metrics.alerts_received.labels(src)
            child.inc(len(alerts))
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
            await self.accept_shared([ev.alert])
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

    async def change(self, body: JsonObject, seq_hint: int) -> None:
        """A change event: straight to the outbox, no grouping."""
        await self.enqueue([render.change_event(body, self.clock.now(), seq_hint)])

    async def enqueue(self, events: Sequence[OutEvent]) -> None:
        await self.store.enqueue(events)
        self.on_enqueue()

    # -- the windows -------------------------------------------------------------------
    async def flush_due(self, budget_s: float = FLUSH_BUDGET) -> int:
        """Flush the groups that are due (flush.py; the stages: stages.py); returns how many
        events were enqueued. `behind` then says whether groups may still be due."""
        return await self.flusher.run(budget_s)

    @property
    def behind(self) -> bool:
        return self.flusher.behind

    async def incident(self, ev: IncidentEvent) -> str:
        """A PagerDuty incident event (webhooks v3) onto its group; the verdict."""
        return await self.incidents.apply(ev)

    async def settle(self) -> None:
        """Wait for the remediation calls under way (rule tests, shutdown)."""
        await self.remediations.settle()
