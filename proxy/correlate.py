"""The windows' state machine: what a due group sends. Pure: data and a time in, data out.

A group is (rule, routing key, group_by values); its PagerDuty dedup_key is a stable
hash of that identity (rules.engine.group_dedup_key). The store records alerts into
groups and says when a group is due (see store.base for the scheduling rule);
`decide` says what a due group sends, `apply` moves it to its next state:

- never triggered: something firing -> trigger; nothing firing -> nothing, the group is
  forgotten (a transient alert never pages anyone);
- triggered: nothing firing -> one resolve, the group is forgotten; still firing -> a
  new trigger after repeat_interval, or on growth after group_interval when the rule
  says `on_growth: update`; otherwise nothing.
"""

from __future__ import annotations

from collections.abc import Collection

from proxy.model import Flush, Group
from proxy.rules.schema import Rule

__all__ = ["apply", "decide"]


def decide(g: Group, rule: Rule, now: float, muted: Collection[str] = ()) -> Flush:
    """`muted`: fingerprints of firing alerts that must not page now (inhibited, or in a
    maintenance window); a group of only muted alerts is looked at again after
    group_interval, and still resolves."""
    firing = [fp for fp, a in g.alerts.items() if a.firing]
    active = [fp for fp in firing if fp not in muted]
    if not firing:
        return Flush(["resolve"] if g.triggered else [], True, 0.0)
    if not active:
        return Flush([], False, now + rule.group_interval)
    if not g.triggered:
        return Flush(["trigger"], False, now + rule.repeat_interval)
    if now >= g.last_trigger_at + rule.repeat_interval:
        return Flush(["trigger"], False, now + rule.repeat_interval)
    if g.grown and rule.on_growth == "update":
        at = g.last_trigger_at + rule.group_interval
        if now >= at:
            return Flush(["trigger"], False, now + rule.repeat_interval)
        return Flush([], False, at)
    return Flush([], False, g.last_trigger_at + rule.repeat_interval)


def apply(g: Group, f: Flush, now: float) -> None:
    """Move `g` to its state after flush `f` (the caller stores it unless f.delete)."""
    g.last_flush_at = now
    g.due = f.next_due
    if "trigger" in f.actions:
        g.triggered = True
        g.grown = False
        g.last_trigger_at = now
