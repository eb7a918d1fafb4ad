"""The windows' state machine: what a due group sends. Pure: data and a time in, data out.

A group is (rule, routing key, group_by values); its PagerDuty dedup_key is a stable
hash of that identity (rules.engine.group_dedup_key). The store records alerts into
groups and says when a group is due (store.base: the scheduling rule); `decide` says
what a due group sends, `apply` moves it to its next state. In order:

    no source refreshed it for stale_after     resolve (if it paged), forget   why: stale
    nothing firing, flapping or held           stay open until stable for hold
    nothing firing, never paged, flapped       one trigger, marked flapping     why: first
    nothing firing, never paged                forget: a transient never pages
    nothing firing, paged, a flap: rule,       stay open until stable for hold  (settling)
      a change within hold
    nothing firing                             one resolve, forget
    everything firing is muted                 look again after group_interval
    never paged, below min_alerts / for        wait (threshold)
    never paged                                trigger                          why: first
    paged, repeat_interval passed              trigger                          why: repeat
    paged, grown, on_growth: update            trigger after group_interval     why: grown
    otherwise                                  nothing

The stages after it (proxy/stages.py) may hold what it decided: a remediation call
(remediate.py), a storm (storm.py), PagerDuty's own state of the incident (incidents.py).
Storm folding and the remediation call itself act on the result; the group's `state`
(proxy/state.py) carries what they and this module need across flushes.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from proxy.model import Flush, Group
from proxy.rules.types import Rule
from proxy.state import Incident

__all__ = ["Page", "apply", "decide", "flapping", "page_details", "recheck"]


@dataclass(slots=True)
class Page:
    """What decide says beyond the actions: why a trigger goes, why nothing does."""

    why: str = ""  # first | grown | repeat (a trigger); stale (a resolve)
    held: str = ""  # threshold | flapping | muted | transient (nothing sent)
    flapping: list[str] = field(default_factory=list)


def flapping(g: Group, rule: Rule, now: float) -> list[str]:
    """The alerts that changed state flap.changes times within flap.within."""
    if rule.flap is None:
        return []
    horizon = now - rule.flap.within
    return [fp for fp, a in g.alerts.items()
            if sum(1 for t in a.changes if t > horizon) >= rule.flap.changes]


def _last_change(g: Group) -> float:
    return max((a.changes[-1] for a in g.alerts.values() if a.changes), default=0.0)


def decide(g: Group, rule: Rule, now: float, muted: Collection[str] = ()) -> tuple[Flush, Page]:
    """`muted`: fingerprints of firing alerts that must not page now (inhibited, or in a
    maintenance window); a group of only muted alerts is looked at again after
    group_interval, and still resolves."""
    firing = [fp for fp, a in g.alerts.items() if a.firing]
    active = [fp for fp in firing if fp not in muted]
    flap = flapping(g, rule, now)
    hold_until = g.state.flap_until
    if flap and rule.flap:
        hold_until = max(hold_until, _last_change(g) + rule.flap.hold)
    page = Page(flapping=flap)
    if rule.stale_after and firing and now - g.last_seen >= rule.stale_after:
        page.why = "stale"
        return Flush(["resolve"] if g.triggered else [], True, 0.0), page
    if not firing:
        return _quiet(g, rule, now, hold_until, page)
    if not active:
        page.held = "muted"
        return Flush([], False, now + rule.group_interval), page
    again = recheck(g, rule, now)
    if not g.triggered:
        if not _threshold_met(g, rule, now, len(active)):
            page.held = "threshold"
            at = g.opened_at + rule.for_ if rule.for_ else now + rule.repeat_interval
            return Flush([], False, min(at, again)), page
        page.why = "first"
        return Flush(["trigger"], False, min(now + rule.repeat_interval, again)), page
    if now >= g.last_trigger_at + rule.repeat_interval:
        page.why = "repeat"
        return Flush(["trigger"], False, min(now + rule.repeat_interval, again)), page
    if g.grown and rule.on_growth == "update" and not (hold_until > now):
        at = g.last_trigger_at + rule.group_interval
        if now >= at:
            page.why = "grown"
            return Flush(["trigger"], False, min(now + rule.repeat_interval, again)), page
        return Flush([], False, min(at, again)), page
    if hold_until > now:
        page.held = "flapping"
    return Flush([], False, min(g.last_trigger_at + rule.repeat_interval, again)), page


def _quiet(g: Group, rule: Rule, now: float, hold_until: float, page: Page) -> tuple[Flush, Page]:
    """Nothing fires in the group any more."""
    if hold_until > now:
        page.held = "flapping"
        if not g.triggered:
            page.why = "first"
            return Flush(["trigger"], False, hold_until), page
        return Flush([], False, hold_until), page
    if not g.triggered:
        page.held = "transient"
        return Flush([], True, 0.0), page
    if rule.flap and (stable_at := _last_change(g) + rule.flap.hold) > now:
        # a flap: rule resolves a page once its alerts have been stable for `hold`: one
        # that fires again before then never closed its page (one trigger, one resolve)
        page.held = "settling"
        return Flush([], False, stable_at), page
    return Flush(["resolve"], True, 0.0), page


def _threshold_met(g: Group, rule: Rule, now: float, n_active: int) -> bool:
    """min_alerts and `for`: either is enough; with neither, the first alert pages."""
    if not rule.min_alerts and not rule.for_:
        return True
    return bool((rule.min_alerts and n_active >= rule.min_alerts)
                or (rule.for_ and now - g.opened_at >= rule.for_))


def recheck(g: Group, rule: Rule, now: float) -> float:
    """When the group must be looked at again at the latest: when it would go stale. (Its
    last_seen is the last refresh stored: one less than model.SEEN_STEP after it does not
    move it, so a group may go stale up to that much before stale_after of quiet.)"""
    if rule.stale_after:
        return max(now, g.last_seen + rule.stale_after)
    return float("inf")


def apply(g: Group, f: Flush, page: Page, now: float, rule: Rule) -> None:
    """Move `g` to its state after flush `f` (the caller stores it unless f.delete)."""
    g.last_flush_at = now
    g.due = f.next_due
    st = g.state
    if page.flapping and rule.flap:
        st.flap_until = max(st.flap_until, _last_change(g) + rule.flap.hold)
    elif st.flap_until <= now:
        st.flap_until = 0.0
    st.held = page.held
    if "trigger" in f.actions:
        if st.pd is not None and st.pd.status == "resolved":
            # a new incident in PagerDuty (which incident got the group's notes is kept:
            # the remediation's outcome belongs to the first one only, proxy/notes.py)
            st.pd = Incident(noted=st.pd.noted) if st.pd.noted else None
        g.triggered = True
        g.grown = False
        g.last_trigger_at = now
        st.why = page.why
        st.paged = tuple(sorted(fp for fp, a in g.alerts.items() if a.firing))
        st.first_page_at = st.first_page_at or now


def page_details(g: Group, page: Page, muted: Collection[str], limit: int = 20) -> dict[str, object]:
    """Why this trigger, and what changed since the last one (custom_details)."""
    out: dict[str, object] = {"why": page.why}
    paged = g.state.paged
    if paged or g.triggered:  # (a group's first page has nothing to compare with)
        firing = {fp for fp, a in g.alerts.items() if a.firing and fp not in muted}
        before = set(paged or ())
        added = sorted(firing - before) if g.triggered else []
        removed = sorted(before - firing)
    else:
        added = removed = []
    if added or removed:
        out["added"] = [g.alerts[fp].labels for fp in added[:limit]]
        out["removed"] = [g.alerts[fp].labels for fp in removed[:limit] if fp in g.alerts]
        out["num_added"], out["num_removed"] = len(added), len(removed)
    if page.flapping or g.state.flap_until:
        out["flapping"] = True
    return out
