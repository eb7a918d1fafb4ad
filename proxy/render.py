"""Every PagerDuty Events v2 body the proxy sends is built here, and every OutEvent made
here: triggers (payload, links and images, details, the size cap), resolves,
acknowledgements and change events. Pure: a group and its rule in, bytes out."""

from __future__ import annotations

from collections.abc import Collection

import orjson

from proxy.ingest.fields import is_time
from proxy.jsontypes import JsonObject
from proxy.model import SEVERITIES, Action, Group, GroupAlert, OutEvent
from proxy.redact import mask
from proxy.rules.types import Rule

__all__ = ["MAX_BODY_BYTES", "am_subject", "change_event", "followup_event", "group_name", "trigger_event"]

MAX_BODY_BYTES = 500_000  # PagerDuty takes 512 KB; keep a margin for the envelope
MAX_DETAIL_ALERTS = 100
MAX_LINKS = 10
_SUMMARY_MAX = 1024


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    """The items every dict shares (read only: one dict is returned as it is)."""
    if len(dicts) <= 1:
        return dicts[0] if dicts else {}
    out = dict(dicts[0])
    for d in dicts[1:]:
        for k in [k for k, v in out.items() if d.get(k) != v]:
            del out[k]
    return out


def template_context(g: Group, alerts: list[GroupAlert], full: bool = True) -> JsonObject:
    """What a rule's templates see: `labels`/`annotations` are those every firing alert
    shares, `alert` the first firing one. Without `full` (a rule with no templates) only
    what the body itself needs: the shared labels and the counts."""
    return _context(g, alerts, [a for a in alerts if a.alert.status == "firing"], full)


def _context(g: Group, alerts: list[GroupAlert], firing: list[GroupAlert], full: bool) -> JsonObject:
    basis = firing or alerts
    ctx: JsonObject = {
        "labels": basis[0].alert.labels if len(basis) == 1 else _common([a.alert.labels for a in basis]),
        "group_labels": g.group_labels,
        "num_firing": len(firing),
        "num_resolved": len(alerts) - len(firing),
        "rule": g.rule,
    }
    if full:
        ctx.update(alert=basis[0].to_dict() if basis else {}, subject=am_subject(g, alerts, basis),
                   annotations=_common([a.alert.annotations for a in basis]),
                   alerts=[a.to_dict() for a in alerts])
    return ctx


def _templated(rule: Rule) -> bool:
    return bool(rule.summary or rule.custom_details or rule.links or rule.images or rule.client
                or rule.client_url or rule.component or rule.group or rule.pd_class)


_RANK = {s: i for i, s in enumerate(SEVERITIES)}


def _severity(firing: list[GroupAlert]) -> str:
    if len(firing) == 1:
        return firing[0].severity if firing[0].severity in _RANK else "error"
    ranks = [_RANK[a.severity] for a in firing if a.severity in _RANK]
    return SEVERITIES[min(ranks)] if ranks else "error"


def group_name(g: Group) -> str:
    """What names a group in logs, the console and a page with nothing better: its group_by
    values; an Events v2 event that kept its own identity by its summary and source (its
    `fingerprint` label is a hash no one reads); else its rule."""
    if "fingerprint" in g.group_labels and g.alerts:
        a = next(iter(g.alerts.values())).alert
        named = " ".join(x for x in (a.summary.strip(), f"({a.labels['source'].strip()})"
                                     if a.labels.get("source", "").strip() else "") if x)
        if named:
            return named
    ident = " ".join(f"{k}={v}" for k, v in g.group_labels.items()
                     if v.strip() and k != "fingerprint")
    return ident or g.rule


def _first_text(*texts: str | None) -> str:
    return next((t for t in texts if t and t.strip()), "")


def _own_summary(a: GroupAlert) -> str:
    """An alert's own summary: an Alertmanager alert's `summary` annotation, any other
    source's summary (a Datadog title, an Events v2 summary, a mapping's `summary`)."""
    if a.alert.source == "alertmanager":
        return a.alert.annotations.get("summary", "").strip()
    return a.alert.summary.strip()


def am_subject(g: Group, alerts: list[GroupAlert], firing: list[GroupAlert]) -> str:
    """Alertmanager's default PagerDuty description (its `__subject` template):
    `[FIRING:3] <group label values> (<the other labels every alert shares>)`, values in
    the order of their label names."""
    group = {k: v for k, v in g.group_labels.items() if k != "fingerprint"}
    common = _common([a.labels for a in alerts]) if alerts else {}
    text = " ".join([f"[FIRING:{len(firing)}]", *(group[k] for k in sorted(group) if group[k])])
    rest = {k: v for k, v in common.items() if k not in group}
    if len(common) > len(group) and rest:
        text += " (" + " ".join(rest[k] for k in sorted(rest)) + ")"
    return text


def _summary(g: Group, rule: Rule, ctx: JsonObject, alerts: list[GroupAlert],
             firing: list[GroupAlert]) -> str:
    """The rule's summary; a lone alert's own; else Alertmanager's default subject. Blank
    ones are passed over (PagerDuty refuses a blank summary) down to the group's name."""
    text = rule.summary.render(ctx).strip() if rule.summary is not None else ""
    if text:
        pass
    elif len(firing) == 1 and _own_summary(firing[0]):
        text = _own_summary(firing[0])
    else:  # (a rule's summary that renders empty means this default, as the importer writes it)
        text = am_subject(g, alerts, firing)
    return (text.strip() or group_name(g))[:_SUMMARY_MAX]


def _alert_detail(a: GroupAlert) -> JsonObject:
    d: JsonObject = {"status": a.status, "labels": a.labels, "summary": a.alert.summary}
    if a.alert.annotations:
        d["annotations"] = a.alert.annotations
    if a.alert.starts_at:
        d["starts_at"] = a.alert.starts_at
    return d


def _payload(g: Group, rule: Rule, ctx: JsonObject, alerts: list[GroupAlert],
             firing: list[GroupAlert], details: JsonObject) -> JsonObject:
    lone = firing[0] if len(firing) == 1 else None
    labels = ctx["labels"]
    payload: JsonObject = {
        "summary": _summary(g, rule, ctx, alerts, firing),
        "source": _first_text((lone or firing[0]).labels.get("source"), labels.get("instance"),
                              labels.get("host"), labels.get("job")) or "alert-proxy",
        "severity": _severity(firing),
        "custom_details": details,
    }
    for f, tpl in (("component", rule.component), ("group", rule.group), ("class", rule.pd_class)):
        value = tpl.render(ctx).strip() if tpl is not None else ""
        if not value and lone and lone.alert.source == "events_v2":
            value = labels.get(f, "")
        if value:
            payload[f] = value
    if lone and lone.alert.starts_at and is_time(lone.alert.starts_at):
        payload["timestamp"] = lone.alert.starts_at
    return payload


def _links_and_images(rule: Rule, ctx: JsonObject, firing: list[GroupAlert]) -> JsonObject:
    """The rule's links and images first, then the alerts' own; only what PagerDuty takes
    (http(s) links, https images), at most MAX_LINKS of each."""
    if not (rule.links or rule.images or any(a.alert.links or a.alert.images for a in firing)):
        return {}
    links: list[dict[str, str]] = [{k: t.render(ctx) for k, t in lk.items()} for lk in rule.links]
    images: list[dict[str, str]] = [{k: t.render(ctx) for k, t in im.items()} for im in rule.images]
    for a in firing:
        links += [lk for lk in a.alert.links if lk not in links]
        images += [im for im in a.alert.images if im not in images]
    out: JsonObject = {}
    good_links = [lk for lk in links if lk.get("href", "").startswith(("http://", "https://"))]
    if good_links:
        out["links"] = good_links[:MAX_LINKS]
    good_images = [im for im in images if im.get("src", "").startswith("https://")]
    if good_images:
        out["images"] = good_images[:MAX_LINKS]
    return out


def _client(rule: Rule, ctx: JsonObject, lone: GroupAlert | None) -> dict[str, str]:
    """The rule's client and client_url, else a lone Events v2 sender's own, else ours."""
    client = rule.client.render(ctx).strip() if rule.client else ""
    if client:
        out = {"client": client}
    elif lone and lone.alert.client:
        out = {"client": lone.alert.client}
    else:
        out = {"client": "alert-proxy"}
    client_url = rule.client_url.render(ctx).strip() if rule.client_url else ""
    if client_url:
        out["client_url"] = client_url
    elif not client and lone and lone.alert.client_url:
        out["client_url"] = lone.alert.client_url
    return out


def _details(g: Group, rule: Rule, ctx: JsonObject, lone: GroupAlert | None,
             extra: JsonObject | None) -> JsonObject:
    details: JsonObject = {
        "num_firing": ctx["num_firing"],
        "num_resolved": ctx["num_resolved"],
        "group": {k: v for k, v in g.group_labels.items() if v},
        "rule": g.rule,
    }
    if lone:  # a lone alert's own details win over ours (an Events v2 sender's, say)
        details.update(lone.alert.custom_details)
    if rule.custom_details:
        details.update({k: t.render(ctx) for k, t in rule.custom_details.items()})
    if extra:
        details.update(extra)
    return details


def _exact(raw: bytes) -> bytes:
    """orjson's result keeps the buffer it grew (16 KB for a 1 KB body): an outbox that
    holds 100,000 events keeps an exact copy instead."""
    return memoryview(raw).tobytes()


def _capped(body: JsonObject, details: JsonObject, alerts: list[GroupAlert],
            overflow: int) -> bytes:
    """The body with as many alerts in its details as fit PagerDuty's size limit, firing
    ones first (`alerts` is in that order); `truncated_alerts` counts the rest (and those
    max_alerts refused)."""
    shown = [_alert_detail(a) for a in alerts]
    limit = min(len(shown), MAX_DETAIL_ALERTS)
    while True:
        details["alerts"] = shown if limit == len(shown) else shown[:limit]
        details.pop("truncated_alerts", None)
        if len(shown) - limit + overflow:
            details["truncated_alerts"] = len(shown) - limit + overflow
        raw = orjson.dumps(body)
        if len(raw) <= MAX_BODY_BYTES or limit == 0:
            return _exact(raw)
        limit //= 2


def trigger_event(g: Group, rule: Rule, now: float, muted: Collection[str] = (),
                  extra: JsonObject | None = None, summary: str | None = None) -> OutEvent:
    """The trigger for group `g`; muted alerts are left out, `extra` joins custom_details,
    `summary` replaces the rule's (a storm incident's own)."""
    alerts = [a for fp, a in g.alerts.items() if fp not in muted] if muted else list(g.alerts.values())
    firing_now = [a for a in alerts if a.alert.status == "firing"]
    firing = firing_now or alerts
    lone = firing[0] if len(firing) == 1 else None
    ctx = _context(g, alerts, firing_now, _templated(rule))
    details = _details(g, rule, ctx, lone, extra)
    payload = _payload(g, rule, ctx, alerts, firing, details)
    if summary is not None:
        payload["summary"] = summary[:_SUMMARY_MAX]
    body: JsonObject = {"routing_key": g.routing_key, "event_action": "trigger",
                            "dedup_key": g.key, "payload": payload,
                            **_client(rule, ctx, lone), **_links_and_images(rule, ctx, firing)}
    if 0 < len(firing_now) < len(alerts):  # firing ones first
        alerts = firing_now + [a for a in alerts if a.alert.status != "firing"]
    raw = _capped(body, details, alerts, g.overflow)
    return OutEvent(routing_key=g.routing_key, dedup_key=g.key, action="trigger",
                    severity=payload["severity"], body=raw, key_name=g.key_name, enqueued_at=now)


def followup_event(routing_key: str, dedup_key: str, action: Action, now: float,
                   key_name: str | None = None) -> OutEvent:
    """A resolve or acknowledge: PagerDuty needs only the key and the dedup_key."""
    body = _exact(orjson.dumps({"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key}))
    return OutEvent(routing_key=routing_key, dedup_key=dedup_key, action=action, severity="info",
                    body=body, key_name=key_name if key_name is not None else mask(routing_key),
                    enqueued_at=now)


def change_event(body: JsonObject, now: float, seq_hint: int) -> OutEvent:
    """A change event, forwarded as the sender wrote it (validated by ingest.events_v2)."""
    rk = body["routing_key"]
    return OutEvent(routing_key=rk, dedup_key=f"change:{now}:{seq_hint}", action="change",
                    severity="info", body=_exact(orjson.dumps(body)), key_name=mask(rk), enqueued_at=now)
