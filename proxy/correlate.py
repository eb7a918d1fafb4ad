"""The windows' state machine: what a due group sends. Pure: data and a time in, data out.

A group is (rule, routing key, group_by values); its PagerDuty dedup_key is a stable
hash of that identity (rules.engine.group_dedup_key). The store records alerts into
groups and says when a group is due (store.base: the scheduling rule); `decide` says
what a due group sends, `apply` moves it to its next state. In order:

    no source refreshed it for stale_after     resolve (if it paged), forget   why: stale
    nothing firing, flapping or held           stay open until stable for hold
    nothing firing, never paged, flapped       one trigger, marked flapping     why: first
    nothing firing, paged, a flap: rule,       stay open until stable for hold  (settling)
      a change within hold
    nothing firing, a remediation was called   forget: remediated, nobody paged
    nothing firing, never paged                forget: a transient never pages
    nothing firing, resolved in PagerDuty      forget: a person resolved it already
    nothing firing                             one resolve, forget
    everything firing is muted                 look again after group_interval
    never paged, below min_alerts / for        wait (threshold)
    never paged, remediation under way         wait until its `wait` ends (remediation)
    never paged                                trigger                          why: first
    resolved in PagerDuty, a new alert or      trigger (a new incident)         why: first
      one firing again since
    resolved in PagerDuty                      nothing for the same alerts
    paged, repeat_interval passed              trigger (not while acknowledged) why: repeat
    paged, grown, on_growth: update            trigger after group_interval     why: grown
    otherwise                                  nothing

Storm folding and the remediation call itself (pipeline) act on the result; the group's
`state` carries what they and this module need across flushes: `paged` (the
fingerprints the last trigger carried), `flap_until`, `held` (why it is not paging now),
`why`, `pd` (PagerDuty's view: status, when, by whom, the alerts firing when a person
resolved it), `remediation` (the call's progress and outcome).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from proxy.model import Flush, Group
from proxy.rules.schema import Rule

__all__ = ["Page", "apply", "decide", "flapping", "page_details"]


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
    hold_until = float(g.state.get("flap_until", 0.0))
    if flap and rule.flap:
        hold_until = max(hold_until, _last_change(g) + rule.flap.hold)
    page = Page(flapping=flap)
    if rule.stale_after and firing and now - g.last_seen >= rule.stale_after:
        page.why = "stale"
        return Flush(["resolve"] if g.triggered else [], True, 0.0), page
    pd = g.state.get("pd") or {}
    remedy = g.state.get("remediation")
    if not firing:
        if hold_until > now:
            page.held = "flapping"
            if not g.triggered:
                page.why = "first"
                return Flush(["trigger"], False, hold_until), page
            return Flush([], False, hold_until), page
        if not g.triggered:
            page.held = "remediated" if remedy else "transient"
            return Flush([], True, 0.0), page
        if rule.flap and (stable_at := _last_change(g) + rule.flap.hold) > now:
            # a flap: rule resolves a page once its alerts have been stable for `hold`: one
            # that fires again before then never closed its page (one trigger, one resolve)
            page.held = "settling"
            return Flush([], False, stable_at), page
        if pd.get("status") == "resolved":
            page.held = "resolved_in_pagerduty"
            return Flush([], True, 0.0), page
        return Flush(["resolve"], True, 0.0), page
    if not active:
        page.held = "muted"
        return Flush([], False, now + rule.group_interval), page
    recheck = _recheck(g, rule, now)
    if not g.triggered:
        if not _threshold_met(g, rule, now, len(active)):
            page.held = "threshold"
            at = g.opened_at + rule.for_ if rule.for_ else now + rule.repeat_interval
            return Flush([], False, min(at, recheck)), page
        if remedy and remedy.get("outcome", "ok") == "ok" and now < float(remedy["until"]):
            page.held = "remediation"
            return Flush([], False, min(float(remedy["until"]), recheck)), page
        page.why = "first"
        return Flush(["trigger"], False, min(now + rule.repeat_interval, recheck)), page
    if pd.get("status") == "resolved":
        since = float(pd.get("at", 0.0))
        silenced = set(pd.get("firing", ()))
        fresh = [fp for fp in active if fp not in silenced
                 or any(t >= since for t in g.alerts[fp].changes)]
        if fresh:
            page.why = "first"
            return Flush(["trigger"], False, min(now + rule.repeat_interval, recheck)), page
        page.held = "resolved_in_pagerduty"
        return Flush([], False, recheck if recheck < float("inf") else now + rule.repeat_interval), page
    if now >= g.last_trigger_at + rule.repeat_interval:
        if pd.get("status") == "acknowledged":
            page.held = "acknowledged"
            return Flush([], False, min(now + rule.repeat_interval, recheck)), page
        page.why = "repeat"
        return Flush(["trigger"], False, min(now + rule.repeat_interval, recheck)), page
    if g.grown and rule.on_growth == "update" and not (hold_until > now):
        at = g.last_trigger_at + rule.group_interval
        if now >= at:
            page.why = "grown"
            return Flush(["trigger"], False, min(now + rule.repeat_interval, recheck)), page
        return Flush([], False, min(at, recheck)), page
    if hold_until > now:
        page.held = "flapping"
    return Flush([], False, min(g.last_trigger_at + rule.repeat_interval, recheck)), page


def _threshold_met(g: Group, rule: Rule, now: float, n_active: int) -> bool:
    """min_alerts and `for`: either is enough; with neither, the first alert pages."""
    if not rule.min_alerts and not rule.for_:
        return True
    return bool((rule.min_alerts and n_active >= rule.min_alerts)
                or (rule.for_ and now - g.opened_at >= rule.for_))


def _recheck(g: Group, rule: Rule, now: float) -> float:
    """When the group must be looked at again at the latest: when it would go stale."""
    if rule.stale_after:
        return max(now, g.last_seen + rule.stale_after)
    return float("inf")


def apply(g: Group, f: Flush, page: Page, now: float, rule: Rule) -> None:
    """Move `g` to its state after flush `f` (the caller stores it unless f.delete)."""
    g.last_flush_at = now
    g.due = f.next_due
    st = g.state
    if page.flapping and rule.flap:
        st["flap_until"] = max(float(st.get("flap_until", 0.0)), _last_change(g) + rule.flap.hold)
    elif float(st.get("flap_until", 0.0)) <= now:
        st.pop("flap_until", None)
    if page.held:
        st["held"] = page.held
    else:
        st.pop("held", None)
    if "trigger" in f.actions:
        if (st.get("pd") or {}).get("status") == "resolved":
            st.pop("pd")  # a new incident in PagerDuty
        g.triggered = True
        g.grown = False
        g.last_trigger_at = now
        st["why"] = page.why
        st["paged"] = sorted(fp for fp, a in g.alerts.items() if a.firing)
        st.setdefault("first_page_at", now)


def page_details(g: Group, page: Page, muted: Collection[str], limit: int = 20) -> dict[str, object]:
    """Why this trigger, and what changed since the last one (custom_details)."""
    out: dict[str, object] = {"why": page.why}
    paged = g.state.get("paged")
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
    if page.flapping or g.state.get("flap_until"):
        out["flapping"] = True
    remedy = g.state.get("remediation")
    if remedy and not g.triggered:
        shown = {k: v for k, v in remedy.items() if k not in ("until", "by")}
        if shown.get("outcome", "ok") == "ok" and "answer" not in shown:
            shown["outcome"] = "unknown"  # no answer recorded: the proxy restarted during the call
            shown["answer"] = "no answer was recorded (the proxy restarted during the call)"
        elif shown.get("outcome") == "ok":
            shown["outcome"] = "not fixed"  # it answered 2xx, but the alerts still fire
        out["remediation"] = shown
    return out
