"""The windows: what a group sends when it is flushed. Pure: data and a time in, data out.

A group is (rule, routing key, group_by values); its PagerDuty dedup_key is a stable
hash of that identity (rules.engine.group_dedup_key). The store records alerts into
groups and says when a group is due (see store.base.Entry for the scheduling rule);
`decide` says what a due group sends:

- never triggered: something firing -> trigger; nothing firing -> nothing, the group is
  forgotten (a transient alert never pages anyone);
- triggered: nothing firing -> one resolve, the group is forgotten; still firing -> a
  new trigger after repeat_interval, or on growth after group_interval when the rule
  says `on_growth: update`; otherwise nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from proxy.model import SEVERITIES, OutEvent
from proxy.rules.engine import RuleSet
from proxy.rules.schema import Rule

__all__ = ["MAX_BODY_BYTES", "Flush", "Group", "decide", "render_followup", "render_trigger"]

MAX_BODY_BYTES = 500_000  # PagerDuty takes 512 KB; keep a margin for the envelope
MAX_DETAIL_ALERTS = 100
MAX_LINKS = 10


@dataclass(slots=True)
class Group:
    """One window as the store keeps it."""

    key: str  # the dedup_key sent to PagerDuty
    rule: str
    routing_key: str
    key_name: str
    group_labels: dict[str, str]
    group_interval: float = 300.0
    resolve_wait: float = 300.0
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)  # fingerprint -> alert
    opened_at: float = 0.0
    due: float = 0.0
    triggered: bool = False
    grown: bool = False  # a firing alert joined after the last trigger
    last_trigger_at: float = 0.0
    last_flush_at: float = 0.0
    overflow: int = 0  # alerts refused by max_alerts
    version: int = 0

    def firing(self) -> list[dict[str, Any]]:
        return [a for a in self.alerts.values() if a["status"] == "firing"]

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class Flush:
    """The outcome of flushing a group: events to enqueue, and the group's next state."""

    actions: list[str]  # "trigger" and/or "resolve"
    delete: bool
    next_due: float


def decide(g: Group, rule: Rule, now: float, muted: Collection[str] = ()) -> Flush:
    """`muted`: fingerprints of firing alerts that must not page now (inhibited, or in a
    maintenance window); a group of only muted alerts is looked at again after
    group_interval, and still resolves."""
    firing = [fp for fp, a in g.alerts.items() if a["status"] == "firing"]
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


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    out = dict(dicts[0])
    for d in dicts[1:]:
        for k in [k for k, v in out.items() if d.get(k) != v]:
            del out[k]
    return out


def _context(g: Group, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    firing = [a for a in alerts if a["status"] == "firing"]
    basis = firing or alerts
    return {
        "alert": basis[0] if basis else {},  # the first firing alert, for mixed groups
        "labels": _common([a["labels"] for a in basis]),
        "annotations": _common([a.get("annotations", {}) for a in basis]),
        "group_labels": g.group_labels,
        "alerts": alerts,
        "num_firing": len(firing),
        "num_resolved": len(alerts) - len(firing),
        "rule": g.rule,
    }


def _severity(firing: list[dict[str, Any]]) -> str:
    ranks = [SEVERITIES.index(a["placed_severity"]) for a in firing if a.get("placed_severity") in SEVERITIES]
    return SEVERITIES[min(ranks)] if ranks else "error"


def _summary(g: Group, rule: Rule, ctx: dict[str, Any], firing: list[dict[str, Any]]) -> str:
    if rule.summary is not None:
        text = rule.summary.render(ctx).strip()
    elif len(firing) == 1:
        a = firing[0]
        text = a.get("summary") or a["labels"].get("alertname") or "alert"
    else:
        ident = " ".join(f"{k}={v}" for k, v in g.group_labels.items() if v and k != "fingerprint")
        first = firing[0].get("summary") or firing[0]["labels"].get("alertname", "")
        text = f"[FIRING:{len(firing)}] {ident}: {first}" if ident else f"[FIRING:{len(firing)}] {first}"
    return (text or "alert")[:1024]


def _alert_detail(a: dict[str, Any]) -> dict[str, Any]:
    d = {"status": a["status"], "labels": a["labels"], "summary": a.get("summary", "")}
    if a.get("annotations"):
        d["annotations"] = a["annotations"]
    if a.get("starts_at"):
        d["starts_at"] = a["starts_at"]
    return d


def render_trigger(g: Group, rules: RuleSet, muted: Collection[str] = ()) -> tuple[bytes, str]:
    """The trigger body for group `g` (bytes) and its severity; muted alerts are left out."""
    rule = rules.rule(g.rule)
    alerts = [a for fp, a in g.alerts.items() if fp not in muted]
    firing = [a for a in alerts if a["status"] == "firing"] or alerts
    ctx = _context(g, alerts)
    sev = _severity(firing)
    lone = firing[0] if len(firing) == 1 else None
    details: dict[str, Any] = {
        "num_firing": ctx["num_firing"],
        "num_resolved": ctx["num_resolved"],
        "group": {k: v for k, v in g.group_labels.items() if v},
        "rule": g.rule,
    }
    if lone:  # a lone alert's own details win over ours (an Events v2 sender's, say)
        details.update(lone.get("custom_details") or {})
    details.update({k: t.render(ctx) for k, t in rule.custom_details.items()})
    links: list[dict[str, str]] = [{k: t.render(ctx) for k, t in link.items()} for link in rule.links]
    images: list[dict[str, str]] = [{k: t.render(ctx) for k, t in im.items()} for im in rule.images]
    for a in firing:
        links += [link for link in a.get("links", []) if link not in links]
        images += [im for im in a.get("images", []) if im not in images]
    payload: dict[str, Any] = {
        "summary": _summary(g, rule, ctx, firing),
        "source": (lone or firing[0])["labels"].get("source")
        or ctx["labels"].get("instance") or ctx["labels"].get("host")
        or ctx["labels"].get("job") or "alert-proxy",
        "severity": sev,
        "custom_details": details,
    }
    for f in ("component", "group", "class"):
        if ctx["labels"].get(f) and lone and lone["source"] == "events_v2":
            payload[f] = ctx["labels"][f]
    if lone and lone.get("starts_at"):
        payload["timestamp"] = lone["starts_at"]
    body: dict[str, Any] = {
        "routing_key": g.routing_key,
        "event_action": "trigger",
        "dedup_key": g.key,
        "payload": payload,
        "client": rule.client.render(ctx) if rule.client else "alert-proxy",
    }
    if rule.client_url:
        body["client_url"] = rule.client_url.render(ctx)
    good_links = [lk for lk in links if lk.get("href", "").startswith(("http://", "https://"))]
    if good_links:
        body["links"] = good_links[:MAX_LINKS]
    good_images = [im for im in images if im.get("src", "").startswith("https://")]
    if good_images:
        body["images"] = good_images[:MAX_LINKS]
    # The alerts themselves, newest states first, capped to fit PagerDuty's size limit.
    shown = [_alert_detail(a) for a in sorted(alerts, key=lambda a: a["status"] != "firing")]
    limit = min(len(shown), MAX_DETAIL_ALERTS)
    while True:
        details["alerts"] = shown[:limit]
        if len(shown) > limit:
            details["truncated_alerts"] = len(shown) - limit + g.overflow
        elif g.overflow:
            details["truncated_alerts"] = g.overflow
        raw = orjson.dumps(body)
        if len(raw) <= MAX_BODY_BYTES or limit == 0:
            return raw, sev
        limit //= 2


def render_followup(routing_key: str, dedup_key: str, action: str) -> bytes:
    """A resolve or acknowledge: PagerDuty needs only the key and the dedup_key."""
    return orjson.dumps({"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key})


def events_for(g: Group, f: Flush, rules: RuleSet, now: float,
               muted: Collection[str] = ()) -> list[OutEvent]:
    out = []
    for action in f.actions:
        if action == "trigger":
            body, sev = render_trigger(g, rules, muted)
        else:
            body, sev = render_followup(g.routing_key, g.key, action), "info"
        out.append(OutEvent(routing_key=g.routing_key, dedup_key=g.key, action=action,  # type: ignore[arg-type]
                            severity=sev, body=body, key_name=g.key_name, enqueued_at=now))
    return out
