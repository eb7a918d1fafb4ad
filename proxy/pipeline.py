"""The stage order, in one place. No HTTP here: app.py parses requests and calls in.

    accept(alerts)  rules.place (match, route, drop) -> store.record (windows, atomically)
    flush_due()     store.claim_due -> mute (inhibit, maintenance) -> correlate.decide
                    -> render -> store.commit (group state + outbox, atomically)
    (sender.py)     outbox -> budget -> PagerDuty

An Events v2 event enters through `accept_event`: a trigger is an alert like any other;
an acknowledge or resolve follows up on the groups that hold its dedup_key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from proxy import correlate, render
from proxy.clock import Clock
from proxy.ingest import events_v2
from proxy.metrics import Metrics
from proxy.model import Alert, Group, GroupAlert, OutEvent
from proxy.rules import RuleSet
from proxy.store import Entry, Resolved, Store

__all__ = ["Pipeline"]

log = logging.getLogger("alert_proxy")
FLUSH_LEASE = 10.0  # seconds a claimed group stays with the replica that claimed it
FLUSH_BATCH = 1000


class Pipeline:
    def __init__(self, rules: RuleSet, store: Store, clock: Clock, metrics: Metrics,
                 on_enqueue: Callable[[], None] = lambda: None) -> None:
        self.rules, self.store, self.clock, self.metrics = rules, store, clock, metrics
        self.on_enqueue = on_enqueue  # the sender's wake-up call

    # -- in --------------------------------------------------------------------------
    async def accept(self, alerts: Sequence[Alert]) -> None:
        """Rules, then the windows: the alerts are in the store when this returns.

        Firing alerts go to the groups their rules choose; resolved alerts go to every
        open group that holds them, whatever the rules say now (a drop, a reload or a
        maintenance window never swallows a resolve)."""
        rules = self.rules
        entries: list[Entry] = []
        resolved: list[Resolved] = []
        marks: list[tuple[str, str]] = []
        for alert in alerts:
            if alert.status == "resolved":
                resolved.append(Resolved(alert.fingerprint, GroupAlert(alert, "error").to_json(),
                                         bool(alert.labels)))
                continue
            if rules.inhibit:
                marks += [(m, alert.fingerprint) for m in rules.source_marks(alert.labels)]
            placements, reason = rules.place(alert)
            if reason:
                self.metrics.suppressed.labels(reason).inc()
            for p in placements:
                r = p.rule
                entries.append(Entry(
                    group_key=p.group_key, meta=p.group_meta(), fingerprint=alert.fingerprint,
                    alert_json=GroupAlert(alert, p.severity).to_json(), group_wait=r.group_wait,
                    group_interval=r.group_interval,
                    resolve_wait=r.group_interval if r.resolve_wait is None else r.resolve_wait,
                    max_alerts=r.max_alerts))
        await self.store.record(entries, resolved, self.clock.now(), marks)
        if alerts:
            self.metrics.alerts_received.labels(alerts[0].source).inc(len(alerts))

    async def accept_event(self, ev: events_v2.Event) -> None:
        """An Events v2 event: a trigger is an alert; acknowledge and resolve follow up."""
        if ev.alert is not None and ev.action == "trigger":
            await self.accept([ev.alert])
        else:
            await self._followup(ev)

    async def _followup(self, ev: events_v2.Event) -> None:
        """acknowledge/resolve for a sender's dedup_key: reach the groups that hold it; one
        the proxy never saw goes through as it is (it may predate the proxy)."""
        groups = await self.store.groups_of(events_v2.fingerprint(ev.routing_key, ev.dedup_key))
        if ev.action == "resolve" and groups and ev.alert is not None:
            await self.accept([ev.alert])
            return
        now = self.clock.now()
        if groups:
            events = [render.followup_event(g.routing_key, g.key, "acknowledge", now, g.key_name)
                      for g in groups if g.triggered]
        else:
            events = [render.followup_event(ev.routing_key, ev.dedup_key,
                                            "resolve" if ev.action == "resolve" else "acknowledge",
                                            now)]
        self.metrics.alerts_received.labels("events_v2").inc()
        await self.enqueue(events)

    async def change(self, body: dict[str, Any], seq_hint: int) -> None:
        """A change event: straight to the outbox, no grouping."""
        await self.enqueue([render.change_event(body, self.clock.now(), seq_hint)])

    async def enqueue(self, events: Sequence[OutEvent]) -> None:
        await self.store.enqueue(events)
        self.on_enqueue()

    # -- the windows -------------------------------------------------------------------
    async def muted(self, g: Group, now: float) -> dict[str, str]:
        """Firing alerts of `g` that must not page now, with the reason."""
        rules = self.rules
        out: dict[str, str] = {}
        wanted: dict[str, list[str]] = {}
        for fp, a in g.alerts.items():
            if not a.firing:
                continue
            if rules.in_maintenance(a.labels, now):
                out[fp] = "maintenance"
            elif marks := rules.target_marks(a.labels):
                wanted[fp] = marks
        if wanted:
            sources = await self.store.marked(sorted({m for ms in wanted.values() for m in ms}))
            for fp, ms in wanted.items():
                if any(sources.get(m, set()) - {fp} for m in ms):
                    out[fp] = "inhibited"
        return out

    async def flush_due(self) -> int:
        """Flush every group that is due; returns how many events were enqueued."""
        now = self.clock.now()
        sent = 0
        for key in await self.store.claim_due(now, lease=FLUSH_LEASE, limit=FLUSH_BATCH):
            for _ in range(10):  # a concurrent change means: decide again on fresh state
                g = await self.store.load(key)
                if g is None:
                    break
                n = await self._flush(g, now)
                if n is not None:
                    sent += n
                    break
        if sent:
            self.on_enqueue()
        return sent

    async def _flush(self, g: Group, now: float) -> int | None:
        """One group: decide, render, commit. None when the group changed meanwhile."""
        rule = self.rules.rule(g.rule)
        muted = await self.muted(g, now)
        f = correlate.decide(g, rule, now, muted)
        events = [render.trigger_event(g, rule, now, muted) if action == "trigger"
                  else render.followup_event(g.routing_key, g.key, "resolve", now, g.key_name)
                  for action in f.actions]
        correlate.apply(g, f, now)
        if not await self.store.commit(g, f.delete, events):
            return None
        self.metrics.flushes.labels("/".join(f.actions) or ("transient" if f.delete else "none")).inc()
        for reason in muted.values():
            self.metrics.suppressed.labels(reason).inc()
        if events:
            log.info("group flushed", extra={"fields": {
                "dedup_key": g.key, "rule": g.rule, "key": g.key_name, "actions": f.actions,
                "firing": len(g.firing()), "alerts": len(g.alerts)}})
        return len(events)
