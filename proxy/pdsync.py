"""Reconciliation: PagerDuty's state of the incidents the proxy believes open, read back
through the REST API and put onto their groups as the lost webhooks would have.

A webhook that never arrived (the subscription disabled for 24 h after three drops, a
network partition, no subscription at all) leaves a group believing its incident is still
open: repeats page a person who resolved it, and a resolve is sent for an incident long
closed. Every --pagerduty-sync-interval, and at start, the proxy asks:

1. the open incidents (triggered or acknowledged), in pages of 100: one request for most
   accounts, matched to the groups by incident_key (= our dedup_key);
2. for each group PagerDuty does not list as open, its newest incident by incident_key:
   resolved there means resolved here.

Each difference becomes the incident event the webhook would have carried and goes through
`Incidents.apply`, so a sync changes a group exactly as the webhook would have (and a
webhook arriving later is stale or a repeat). Requests are paced under PagerDuty's rate
limit (pdrest.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from proxy.clock import Clock
from proxy.incidents import Incidents
from proxy.ingest.pagerduty import IncidentEvent
from proxy.metrics import Metrics
from proxy.model import Group
from proxy.notes import Notes
from proxy.pdrest import APIError, PagerDutyAPI, incident_time
from proxy.store import Store

__all__ = ["Change", "Sync"]

log = logging.getLogger("alert_proxy")


@dataclass(slots=True)
class Change:
    dedup_key: str
    incident: str
    was: str  # what the group believed: triggered | acknowledged
    now: str  # what PagerDuty says
    by: str

    def line(self) -> str:
        by = f" by {self.by}" if self.by else ""
        return f"{self.dedup_key}: {self.was} -> {self.now}{by} (incident {self.incident})"


def believed(g: Group) -> str:
    """What the proxy believes of a group's incident: triggered, acknowledged, or "" (none
    open: never paged, resolved)."""
    if not g.triggered:
        return ""
    pd = g.state.pd
    status = pd.status if pd is not None and pd.status else "triggered"
    return "" if status == "resolved" else status


class Sync:
    def __init__(self, store: Store, incidents: Incidents, api: PagerDutyAPI, metrics: Metrics,
                 clock: Clock, notes: Notes | None = None) -> None:
        self.store, self.incidents, self.api, self.metrics = store, incidents, api, metrics
        self.clock, self.notes = clock, notes

    async def run(self) -> list[Change]:
        """One pass; the changes it made. APIError or StoreError when it could not finish
        (what it changed before stays changed)."""
        changes = await self._pass()
        self.metrics.pd_sync_changes.inc(len(changes))
        self.metrics.pd_sync_last.set(self.clock.now())
        return changes

    async def _pass(self) -> list[Change]:
        heads = {g.key: g for g in await self.store.heads()}
        groups = {k: v for k, v in ((k, believed(g)) for k, g in heads.items()) if v}
        changes: list[Change] = []
        if not groups:
            return changes
        open_: dict[str, Any] = {}
        for inc in await self.api.open_incidents():
            key = inc.get("incident_key")
            if key in groups and incident_time(inc.get("created_at")) >= incident_time(
                    open_.get(key, {}).get("created_at")):
                open_[key] = inc
        for key, was in groups.items():
            inc = open_.get(key)
            if inc is None:
                try:
                    inc = await self.api.incident_for(key)
                except APIError as e:
                    if e.status in (0, 429) or e.status >= 500:
                        raise
                    log.warning("PagerDuty sync: incident not read", extra={"fields": {
                        "dedup_key": key, "error": str(e)}})
                    continue
                if inc is None:  # not made yet (the Events API answers first), or not ours
                    continue
            status = str(inc.get("status", ""))
            pd = heads[key].state.pd
            if (self.notes is not None and status != "resolved" and self.notes.needed(heads[key])
                    and (pd is None or pd.noted != inc.get("id"))):
                self.notes.want(key, 0.0)  # (a restart forgot it)
            if status in ("triggered", "acknowledged", "resolved") and status != was:
                change = await self._apply(key, was, status, inc)
                if change is not None:
                    changes.append(change)
        return changes

    async def _apply(self, key: str, was: str, status: str, inc: Any) -> Change | None:
        at = incident_time(inc.get("last_status_change_at")) or incident_time(inc.get("updated_at"))
        by = ""
        if status == "acknowledged":
            acks = inc.get("acknowledgements") or []
            if acks and isinstance(acks[-1], dict):
                by = str((acks[-1].get("acknowledger") or {}).get("summary", ""))
        ev = IncidentEvent(id=f"sync:{inc.get('id')}:{status}:{at}", event_type=f"incident.{status}",
                           occurred_at=at, incident_id=str(inc.get("id", "")), incident_key=key,
                           status=status, agent=by)
        verdict = await self.incidents.apply(ev)
        if verdict != "applied":
            return None
        change = Change(key, ev.incident_id, was, status, by)
        log.info("PagerDuty sync: incident state corrected", extra={"fields": {
            "dedup_key": key, "was": was, "now": status, "incident": ev.incident_id, "by": by}})
        return change
