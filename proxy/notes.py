"""Notes on the incident's timeline, through PagerDuty's REST API: a rule's `notes:`
(runbook steps, diagnostic links, the alerts' details: templates over the group, as the
enrichment templates) and, when the page went out after a remediation that did not work,
what the remediation answered. Once per incident.

When a trigger is delivered, its group is noted here; a moment later (the Events API
answers before the incident exists) the incident behind the dedup_key is found, the notes
it does not hold yet are added, and the group remembers the incident (`pd.noted`). Asking
for the incident's notes first makes a second writer (another replica, a retry after a
crash between the note and the memory of it) add nothing twice. A restart forgets the
groups waiting here; the sync pass (pdsync.py) hands back those still unnoted."""

from __future__ import annotations

import logging
from collections.abc import Callable

from proxy.clock import Clock
from proxy.errors import StoreError
from proxy.metrics import Metrics
from proxy.model import Group
from proxy.pdrest import APIError, PagerDutyAPI
from proxy.render import template_context
from proxy.rules import RuleSet
from proxy.rules.types import RuleFile
from proxy.state import Incident
from proxy.store import Commit, Store

__all__ = ["Notes", "wants_notes"]

log = logging.getLogger("alert_proxy")
FIRST_LOOK = 2.0  # seconds from the trigger's 202 to the first look for its incident
TRIES = 6  # looks for an incident that is not there yet (2, 4, 8, ... s apart)


def wants_notes(rf: RuleFile) -> bool:
    """Whether rules write incident notes: a rule's `notes:`, or a remediation (whose
    failure is noted)."""
    rules = [rf.defaults, *(r for _, r in RuleSet(rf).walk())]
    return any(r.notes or r.remediate for r in rules)


def remediation_note(g: Group) -> str:
    r = g.state.remediation
    if r is None or r.outcome in ("", "ok"):
        return ""
    status = f" (HTTP {r.http_status})" if r.http_status else ""
    answer = f": {r.answer}" if r.answer else ""
    return (f"alert-proxy: the remediation before this page {r.outcome}{status} after "
            f"{r.seconds:.1f} s{answer}")


class Notes:
    def __init__(self, store: Store, rules: Callable[[], RuleSet], api: PagerDutyAPI, clock: Clock,
                 metrics: Metrics) -> None:
        self.store, self.rules, self.api, self.clock, self.metrics = store, rules, api, clock, metrics
        self._waiting: dict[str, tuple[float, int]] = {}  # dedup_key -> (when to look, tries)

    def texts(self, g: Group) -> list[str]:
        """The notes a group's incident gets, rendered now."""
        rule = self.rules().rule(g.rule)
        out = []
        if rule.notes:
            alerts = list(g.alerts.values())
            ctx = template_context(g, alerts)
            out = [t for t in (tpl.render(ctx).strip() for tpl in rule.notes) if t]
        if g.state.pd is not None and g.state.pd.noted:
            return out  # a later incident of the group: the remediation preceded the first
        return out + [n for n in (remediation_note(g),) if n]

    def needed(self, g: Group) -> bool:
        """Whether a group's incident gets notes (from its head: no alerts needed)."""
        return bool(self.rules().rule(g.rule).notes or remediation_note(g))

    def want(self, dedup_key: str, after: float = FIRST_LOOK) -> None:
        """A trigger for this group was delivered: look for its incident soon."""
        if dedup_key not in self._waiting:
            self._waiting[dedup_key] = (self.clock.now() + after, 0)

    async def step(self) -> None:
        """The loop's turn: every group whose time to look has come."""
        now = self.clock.now()
        for key, (at, tries) in list(self._waiting.items()):
            if at > now:
                continue
            try:
                verdict = await self.write(key)
            except (APIError, StoreError) as e:
                verdict = "retry"
                log.warning("incident notes not written yet", extra={"fields": {
                    "dedup_key": key, "error": str(e)}})
            if verdict in ("not_yet", "retry") and tries + 1 < TRIES:
                self._waiting[key] = (now + FIRST_LOOK * 2 ** (tries + 1), tries + 1)
            else:
                self._waiting.pop(key, None)
                if verdict in ("not_yet", "retry"):
                    self.metrics.pd_notes.labels("failed").inc()

    async def write(self, key: str) -> str:
        """Add the group's notes to its open incident: written, done (already), none (no
        notes), gone (no group, or its incident is resolved) or not_yet (no incident yet)."""
        g = await self.store.load(key)
        if g is None or not g.triggered:
            return "gone"
        texts = self.texts(g)
        if not texts:
            return "none"
        inc = await self.api.incident_for(key)
        if inc is None:
            return "not_yet"
        incident = str(inc.get("id", ""))
        if g.state.pd is not None and g.state.pd.noted == incident:
            return "done"
        if inc.get("status") == "resolved":
            return "gone"
        held = set(await self.api.notes(incident))
        added = 0
        for text in texts:
            if text not in held:
                await self.api.add_note(incident, text)
                added += 1
        self.metrics.pd_notes.labels("added").inc(added)
        await self._remember(key, incident)
        log.info("incident notes written", extra={"fields": {
            "dedup_key": key, "incident": incident, "notes": added}})
        return "written"

    async def _remember(self, key: str, incident: str) -> None:
        for _ in range(10):
            g = await self.store.load(key)
            if g is None:
                return
            pd = g.state.pd or Incident()
            pd.noted = incident
            g.state.pd = pd
            if (await self.store.commit([Commit(g, False, [])]))[0]:
                return
        raise StoreError("the group kept changing while its notes were remembered")
