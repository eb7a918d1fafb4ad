"""PagerDuty's side of a group: its incident's state, from PagerDuty's webhooks v3, and
what that state holds back in a flush.

    acknowledged      no repeat trigger while it stays acknowledged (unacknowledged ends it)
    resolved by a     the alerts firing then do not page again; a new alert, or one that
      person         resolved and fires again since, opens a new incident (why: first);
                      when the group's alerts all resolve, nothing more is sent
    reopened          open again in PagerDuty: repeats resume

`apply` records an event on its group (exactly once: a repeated event id changes
nothing, an older one neither); `hold` is the flush stage that reads it."""

from __future__ import annotations

import logging

from proxy.correlate import recheck
from proxy.errors import StoreError
from proxy.ingest.pagerduty import INCIDENT_EVENTS, IncidentEvent
from proxy.metrics import Metrics
from proxy.model import Group
from proxy.plan import Plan
from proxy.rules.engine import STORM_RULE
from proxy.state import Incident
from proxy.stats import Tally, service_of
from proxy.store import Commit, Store

__all__ = ["Incidents"]

log = logging.getLogger("alert_proxy")
_STATUS = {"incident.acknowledged": "acknowledged", "incident.resolved": "resolved"}


class Incidents:
    def __init__(self, store: Store, metrics: Metrics, tally: Tally) -> None:
        self.store, self.metrics, self.tally = store, metrics, tally

    async def apply(self, ev: IncidentEvent) -> str:
        """An incident event for one of our dedup_keys, onto its group. Returns the verdict,
        a metric label: applied, duplicate, stale (older than what the group knows),
        foreign (a key we did not send, or closed), ignored."""
        if ev.event_type not in INCIDENT_EVENTS:
            return "ignored"
        if not ev.incident_key:
            return "foreign"
        for _ in range(10):
            g = await self.store.load(ev.incident_key)
            if g is None:
                return "foreign"
            pd = g.state.pd or Incident()
            if pd.event == ev.id:
                return "duplicate"
            if ev.occurred_at < pd.at:
                return "stale"
            pd.status = _STATUS.get(ev.event_type, "triggered")
            pd.at, pd.event, pd.incident, pd.by = ev.occurred_at, ev.id, ev.incident_id, ev.agent
            pd.firing = ()
            first_page = g.state.first_page_at
            if pd.status == "acknowledged" and not pd.acknowledged_at:
                pd.acknowledged_at = ev.occurred_at
                self._took("tta", self.metrics.time_to_ack, g, first_page, ev.occurred_at)
            if pd.status == "resolved":
                pd.firing = tuple(sorted(fp for fp, a in g.alerts.items() if a.firing))
                if not pd.resolved_at:
                    self._took("ttr", self.metrics.time_to_resolve, g, first_page, ev.occurred_at)
                pd.resolved_at = ev.occurred_at
            g.state.pd = pd
            if (await self.store.commit([Commit(g, False, [])]))[0]:
                log.info("PagerDuty incident event applied", extra={"fields": {
                    "dedup_key": g.key, "event_type": ev.event_type, "incident": ev.incident_id,
                    "by": ev.agent}})
                return "applied"
        raise StoreError("the group kept changing while a PagerDuty event was applied")

    def _took(self, what: str, histogram: object, g: Group, first_page: float, at: float) -> None:
        """Time to acknowledge or resolve: overall, and per rule and service (stats.py)."""
        if not first_page:
            return
        took = max(0.0, at - first_page)
        histogram.observe(took)  # type: ignore[attr-defined]
        service = service_of(g)
        self.tally.merge({f"{what}_sum": took, f"{what}_n": 1,
                          f"{what}_sum_rule|{g.rule}": took, f"{what}_n_rule|{g.rule}": 1,
                          f"{what}_sum_service|{service}": took, f"{what}_n_service|{service}": 1}, at)

    @staticmethod
    def hold(plan: Plan) -> None:
        """The flush stage: what PagerDuty's state of the incident changes in the plan."""
        g, f, page = plan.group, plan.flush, plan.page
        pd = g.state.pd
        if pd is None or not pd.status or g.rule == STORM_RULE:  # (a storm decides for itself)
            return
        if f.delete and f.actions == ["resolve"] and page.why != "stale" and pd.status == "resolved":
            f.actions = []  # a person resolved it already
            page.held = "resolved_in_pagerduty"
            return
        active = [fp for fp, a in g.alerts.items() if a.firing and fp not in plan.muted]
        if not active or not g.triggered or f.delete:
            return
        again = recheck(g, plan.rule, plan.now)
        if pd.status == "resolved":
            fresh = [fp for fp in active if fp not in pd.firing
                     or any(t >= pd.at for t in g.alerts[fp].changes)]
            if fresh:  # a new alert, or one firing again: a new incident
                f.actions, page.why, page.held = ["trigger"], "first", ""
                f.next_due = min(plan.now + plan.rule.repeat_interval, again)
            else:
                f.actions, page.why, page.held = [], "", "resolved_in_pagerduty"
                f.next_due = again if again < float("inf") else plan.now + plan.rule.repeat_interval
        elif pd.status == "acknowledged" and page.why == "repeat":
            f.actions, page.why, page.held = [], "", "acknowledged"
            f.next_due = min(plan.now + plan.rule.repeat_interval, again)
