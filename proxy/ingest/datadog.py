"""Datadog webhooks: the documented default payload, or one with the monitor variables.

The payload is a template the user writes; we read these keys when present (each named
after its Datadog variable): `title` ($EVENT_TITLE, required), `body` ($EVENT_MSG),
`id` ($ID), `alert_id` ($ALERT_ID), `alert_cycle_key` ($ALERT_CYCLE_KEY), `aggreg_key`
($AGGREG_KEY), `scope` ($ALERT_SCOPE), `transition` ($ALERT_TRANSITION), `alert_type`
($ALERT_TYPE), `priority` ($ALERT_PRIORITY), `tags` ($TAGS, "k:v,k2:v2" or an array),
`hostname` ($HOSTNAME), `date` ($DATE, epoch ms), `link` ($LINK), `snapshot` ($SNAPSHOT),
`org.id` ($ORG_ID). Tags `k:v` become labels.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from proxy.errors import InputError
from proxy.ingest.fields import fingerprint_of
from proxy.jsontypes import JsonObject
from proxy.model import Alert, Status

__all__ = ["TRANSITIONS", "parse"]

# Every $ALERT_TRANSITION value Datadog documents, and what it means for the alert.
TRANSITIONS: dict[str, Status] = {
    "triggered": "firing",
    "re-triggered": "firing",
    "warn": "firing",
    "re-warn": "firing",
    "no data": "firing",
    "re-no data": "firing",
    "renotify": "firing",
    "recovered": "resolved",
}
_TYPE_SEVERITY = {"error": "error", "warning": "warning", "info": "info", "success": "info"}
_PRIORITY_SEVERITY = {"p1": "critical", "p2": "error", "p3": "warning", "p4": "info", "p5": "info"}
_TITLE_PREFIX = re.compile(r"^\s*\[(?P<t>[^\]]+)\]\s*")
_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_]")
_TEXT_KEYS = ("title", "body", "transition", "alert_type", "priority", "alert_id",
              "alert_cycle_key", "aggreg_key", "scope", "hostname", "link", "snapshot")
# payload key -> the label it becomes
_LABELS = (("alert_id", "monitor_id"), ("hostname", "host"), ("scope", "scope"),
           ("priority", "priority"), ("alert_type", "alert_type"), ("aggreg_key", "aggreg_key"))


def _text(body: JsonObject, key: str, errors: list[str]) -> str:
    v = body.get(key)
    if v is None:
        return ""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        errors.append(f"'{key}' must be a string")
        return ""
    return v


def _tags(value: Any, errors: list[str]) -> dict[str, str]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        items = [t.strip() for t in value.split(",")]
    elif isinstance(value, list) and all(isinstance(t, str) for t in value):
        items = [t.strip() for t in value]
    else:
        errors.append("'tags' must be a string \"k:v,k2:v2\" or an array of strings")
        return {}
    labels: dict[str, str] = {}
    for tag in items:
        if not tag:
            continue
        k, _, v = tag.partition(":")
        labels[_LABEL_CHARS.sub("_", k)] = v
    return labels


def _date(value: Any, errors: list[str]) -> str:
    """$DATE: epoch milliseconds (a number or digits) -> ISO 8601; "" when absent."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not (isinstance(value, (int, float)) or
                                       (isinstance(value, str) and value.isascii() and value.isdigit())):
        errors.append("'date' must be epoch milliseconds (Datadog's $DATE)")
        return ""
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        errors.append(f"'date' {value!r} is not a time Datadog could have sent (epoch milliseconds)")
        return ""


def parse(body: Any) -> list[Alert]:
    if not isinstance(body, dict):
        raise InputError(["body must be a JSON object (Datadog webhook payload)"])
    errors: list[str] = []
    t = {k: _text(body, k, errors) for k in _TEXT_KEYS}  # every field checked before use
    title = t["title"]
    if not title.strip():
        errors.append("'title' is missing or blank (use \"title\": \"$EVENT_TITLE\")")
    m = _TITLE_PREFIX.match(title)
    name = title[m.end():] if m else title
    transition = t["transition"] or (m.group("t") if m else "")
    alert_type = t["alert_type"].lower()
    priority = t["priority"].lower()
    status: Status
    if transition:
        found = TRANSITIONS.get(transition.strip().lower())
        if found is None:
            if "transition" in body:
                errors.append(f"'transition' {transition!r} is not a Datadog alert transition")
            found = "resolved" if alert_type == "success" else "firing"
        status = found
    else:
        status = "resolved" if alert_type == "success" else "firing"
    labels = _tags(body.get("tags"), errors)
    org = body.get("org")
    starts = _date(body.get("date"), errors)
    if errors:
        raise InputError(errors)
    for key, label in _LABELS:
        if t[key]:
            labels.setdefault(label, t[key])
    labels.setdefault("alertname", name.strip())
    if transition:
        labels["transition"] = transition
    severity = _PRIORITY_SEVERITY.get(priority) or _TYPE_SEVERITY.get(alert_type)
    identity = (
        t["alert_cycle_key"]
        or (t["alert_id"] + "/" + t["scope"] if t["alert_id"] else "")
        or t["aggreg_key"]
        or name.strip()
    )
    link, snapshot = t["link"], t["snapshot"]
    details: JsonObject = {"body": t["body"]} if t["body"] else {}
    if isinstance(org, dict) and org.get("id"):
        details["org_id"] = str(org["id"])
    return [
        Alert(
            fingerprint="dd:" + fingerprint_of(identity),
            status=status,
            labels=labels,
            source="datadog",
            summary=name.strip(),
            severity=severity,
            starts_at=starts,
            custom_details=details,
            links=[{"href": link, "text": "Datadog"}] if link.startswith("http") else [],
            images=[{"src": snapshot, "alt": "snapshot"}] if snapshot.startswith("https") else [],
        )
    ]
