"""The stage order of a flush, in one place (Alertmanager's notify.MultiStage is the
model): what a due group goes through, each stage one function over one typed `Plan`.

    mute       (per batch: one store call for its inhibition marks; the silences as the
               proxy's silences loop last read them) firing alerts that must not page now: silenced (amtool,
               silences.py), in a maintenance window, or inhibited by another alert
    decide     correlate.decide, the window state machine (storm.decide for a storm incident)
    remediate  a first page waits for its remediation call (remediation.py)
    fold       a first page folds into its routing key's storm incident (storm.py)
    incident   PagerDuty's own state: no repeat while acknowledged, no page again for the
               alerts a person resolved (incidents.py)
    render     the events it sends, built by render.py
    advance    the group's next state (correlate.apply)
      ... the batch engine commits the plans (flush.py) ...
    follow     what a committed plan starts (its remediation call, its storm's figures),
               and what it counts (metrics, noise figures, its log line)

The batch engine (claims ahead, overlapping commits) is flush.py; nothing here does I/O
but `plan`'s mute step and `end`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from proxy import correlate, logs, render, storm
from proxy.clock import Clock
from proxy.incidents import Incidents
from proxy.jsontypes import JsonObject
from proxy.metrics import Metrics
from proxy.model import Group
from proxy.plan import Plan
from proxy.remediation import Remediations
from proxy.rules import RuleSet
from proxy.rules.engine import STORM_RULE
from proxy.silences import Silences
from proxy.stats import Tally, service_of
from proxy.store import Store

__all__ = ["SUPPRESSED", "Stages"]

log = logging.getLogger("alert_proxy")
Stage = Callable[[Plan], None]
SUPPRESSED = ("transient", "flapping", "folded", "remediated")  # held reasons that are counted
# A plan yields to the event loop after PLAN_YIELD units of work: a group is one unit, and
# each PLAN_ALERTS alerts it holds one more (a group of 1,000 alerts takes ~7 ms to plan,
# as long as 50 groups of one).
PLAN_YIELD = 20
PLAN_ALERTS = 20


class Stages:
    def __init__(self, rules: Callable[[], RuleSet], store: Store, clock: Clock, metrics: Metrics,
                 tally: Tally, remediations: Remediations, incidents: Incidents,
                 silences: Silences) -> None:
        self.rules = rules  # the rules in force (a reload changes them between two flushes)
        self.store, self.clock, self.metrics, self.tally = store, clock, metrics, tally
        self.remediations, self.incidents, self.silences = remediations, incidents, silences
        self.folding = storm.Folding()
        self._views: JsonObject = {}  # this batch's storms (storm.Folding.views)
        self._flushes: JsonObject = {}  # label -> its counter (labels() costs per call)

    def order(self) -> tuple[Stage, ...]:
        """The stages of one group's plan, in order."""
        return (self.decide, self.remediations.hold, self.fold, self.incidents.hold,
                self.render, self.advance)

    # -- the policy side of flush.Flusher -----------------------------------------------
    def begin(self) -> None:
        self.folding.begin()

    async def plan(self, groups: Sequence[Group], now: float) -> list[Plan]:
        """A batch's plans; it yields every few groups, so that the claims under way send
        their second step (the load) while Python plans."""
        rules = self.rules()
        muted = await self.mute(groups, now)
        self._views = await self.folding.views(self.store, groups) if rules.defaults.storm else {}
        stages = self.order()
        plans = []
        work = 0  # since the last yield: a group counts 1, and 1 more per PLAN_ALERTS alerts
        for g in groups:
            plan = Plan(g, rules.rule(g.rule), now, muted.get(g.key, {}), g.state.held)
            for stage in stages:
                stage(plan)
            plans.append(plan)
            work += 1 + len(g.alerts) // PLAN_ALERTS
            if work >= PLAN_YIELD:
                work = 0
                await asyncio.sleep(0)
        return plans

    def follow(self, plan: Plan) -> None:
        if plan.call is not None:
            self.remediations.start(plan.group.key, plan.call)
        if plan.storm is not None:
            self.folding.note(plan.storm)
        self.account(plan)

    async def end(self) -> None:
        """The storms' figures: once per storm and flush, whatever its size (and again at
        the next flush if the store fails now)."""
        await self.folding.apply(self.store, self.clock.now(), self.rules().rule(STORM_RULE))

    # -- the stages ----------------------------------------------------------------------
    async def mute(self, groups: Sequence[Group], now: float) -> dict[str, dict[str, str]]:
        """For each group, its firing alerts that must not page now, with the reason
        (silenced, maintenance, inhibited); one store call for the inhibition marks of the
        batch; the silences are those last read (app.py reads them every second)."""
        rules = self.rules()
        live = self.silences.active(now)  # (read from the store by the proxy's silences loop)
        out: dict[str, dict[str, str]] = {}
        if not rules.maintenance and not rules.inhibit and not live:
            return out
        wanted: dict[tuple[str, str], list[str]] = {}
        for g in groups:
            for fp, a in g.alerts.items():
                if not a.firing:
                    continue
                if live and self.silences.silenced_by(a.labels, now, live):
                    out.setdefault(g.key, {})[fp] = "silenced"
                elif rules.in_maintenance(a.labels, now, g.rule):
                    out.setdefault(g.key, {})[fp] = "maintenance"
                elif marks := rules.target_marks(a.labels):
                    wanted[(g.key, fp)] = marks
        if wanted:
            sources = await self.store.marked(sorted({m for ms in wanted.values() for m in ms}))
            for (key, fp), ms in wanted.items():
                if any(sources.get(m, set()) - {fp} for m in ms):
                    out.setdefault(key, {})[fp] = "inhibited"
        return out

    def decide(self, plan: Plan) -> None:
        g = plan.group
        if g.rule == STORM_RULE:
            cfg = self.rules().defaults.storm
            plan.flush, plan.page = storm.decide(g, plan.rule, cfg.within if cfg else 0.0, plan.now)
        else:
            plan.flush, plan.page = correlate.decide(g, plan.rule, plan.now, plan.muted)

    def fold(self, plan: Plan) -> None:
        if plan.group.rule != STORM_RULE:
            plan.held_now, plan.storm = self.folding.member(
                plan.group, plan.flush, plan.page, plan.rule, self.rules().defaults.storm,
                self._views, plan.now)

    @staticmethod
    def render(plan: Plan) -> None:
        g, f, now = plan.group, plan.flush, plan.now
        if g.rule == STORM_RULE:
            plan.details, plan.summary = storm.details(g), storm.summary(g)
            if "trigger" in f.actions:
                storm.paged(g)
        else:
            plan.details = {**correlate.page_details(g, plan.page, plan.muted),
                            **Remediations.details(g)}
        if g.state.unfolded:
            plan.details["after_storm"] = True
        plan.events = [
            render.trigger_event(g, plan.rule, now, plan.muted, plan.details, plan.summary)
            if action == "trigger" else render.followup_event(g.routing_key, g.key, "resolve", now, g.key_name)
            for action in f.actions]

    @staticmethod
    def advance(plan: Plan) -> None:
        correlate.apply(plan.group, plan.flush, plan.page, plan.now, plan.rule)

    # -- after the commit ----------------------------------------------------------------------
    def _suppressed(self, reason: str, n: int, now: float) -> None:
        self.metrics.suppressed.labels(reason).inc(n)
        self.tally.add("suppressed|" + reason, n, now)

    def account(self, plan: Plan) -> None:
        """A committed plan's metrics, noise figures and log line."""
        g, f, page, now = plan.group, plan.flush, plan.page, plan.now
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
            service = service_of(g)
            counts = {"page|" + (page.why or "first"): 1.0, "page_rule|" + g.rule: 1.0,
                      "page_service|" + service: 1.0}
            if (page.why or "first") == "first":  # an incident opened (the rest: repeats)
                counts.update({"incident_rule|" + g.rule: 1.0, "incident_service|" + service: 1.0})
            if page.why == "first" and g.state.first_page_at == now:
                counts.update(ttp_sum=now - g.opened_at, ttp_n=1.0)
            self.tally.merge(counts, now)
        elif "trigger" in f.actions:
            self.tally.add("page|storm", 1, now)
        if plan.events or held in ("folded", "flapping") and held != plan.held_before:
            logs.info(log, "group flushed", {
                "dedup_key": g.key, "group": render.group_name(g), "rule": g.rule,
                "key": g.key_name, "actions": f.actions,
                "why": page.why or None, "held": held or None, "firing": len(g.firing()),
                "alerts": len(g.alerts)})
