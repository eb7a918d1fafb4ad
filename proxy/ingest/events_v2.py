"""PagerDuty Events API v2 bodies, validated the way PagerDuty does it (see FACTS.md).

Error wording follows PagerDuty's own answers so that clients which show them read the
same thing they would read from PagerDuty. Unknown top-level fields are accepted."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from proxy.errors import InputError, NotJSON
from proxy.ingest.fields import fingerprint_of, is_time, link_list
from proxy.jsontypes import JsonObject
from proxy.model import SEVERITIES, Alert

__all__ = ["Event", "check_timestamp", "fingerprint", "parse", "parse_change", "valid_routing_key"]

_ACTIONS = ("trigger", "acknowledge", "resolve")
_LABEL_FIELDS = ("source", "severity", "component", "group", "class", "summary")


@dataclass(slots=True)
class Event:
    action: str
    routing_key: str
    dedup_key: str
    alert: Alert | None  # None for acknowledge


def valid_routing_key(body: JsonObject, errors: list[str]) -> str:
    rk = body.get("routing_key")
    if not isinstance(rk, str) or not rk.strip():
        errors.append("'routing_key' is missing or blank")
        return ""
    if len(rk) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    elif not rk.isalnum() or not rk.isascii():
        errors.append("'routing_key' is invalid (should be 32 alphanumeric characters)")
    return rk


def _summary(payload: JsonObject, errors: list[str]) -> str:
    s = payload.get("summary")
    if not isinstance(s, str) or not s.strip():
        errors.append("'payload.summary' is missing or blank")
        return ""
    if len(s) > 1024:
        errors.append("Length of 'payload.summary' is incorrect (should be at most 1024 characters)")
    return s


# An ISO 8601 date-time: a date, a time, and optionally seconds, fraction and an offset
# (PagerDuty's own examples write +0000, without the colon).
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")


def check_timestamp(payload: JsonObject, errors: list[str]) -> str:
    ts = payload.get("timestamp")
    if ts is None:
        return ""
    if isinstance(ts, str) and _DATE_TIME.fullmatch(ts) and is_time(ts):
        return ts
    errors.append("'payload.timestamp' is invalid (should be an ISO 8601 date-time)")
    return ""


def _optional_texts(obj: JsonObject, where: str, names: tuple[str, ...], errors: list[str]) -> None:
    """Fields that are strings when given (PagerDuty refuses anything else)."""
    for name in names:
        if name in obj and obj[name] is not None and not isinstance(obj[name], str):
            errors.append(f"'{where}{name}' is invalid (should be a string)")


def _details(payload: JsonObject, errors: list[str]) -> JsonObject:
    cd = payload.get("custom_details")
    if cd is None:
        return {}
    if not isinstance(cd, dict):
        errors.append("'payload.custom_details' is invalid (should be an object)")
        return {}
    return cd


def fingerprint(routing_key: str, dedup_key: str) -> str:
    """The alert fingerprint of an Events v2 (routing key, dedup_key): its identity."""
    return "ev:" + fingerprint_of(routing_key, dedup_key)


def _opt_text(body: JsonObject, key: str, errors: list[str]) -> str | None:
    v = body.get(key)
    if v is not None and not isinstance(v, str):
        errors.append(f"'{key}' must be a string")
        return None
    return v


def _action_and_key(body: JsonObject, errors: list[str]) -> tuple[Any, Any]:
    """The event's action and dedup_key, checked."""
    action = body.get("event_action")
    if not isinstance(action, str) or not action.strip():
        errors.append("'event_action' is missing or blank")
    elif action not in _ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dk = body.get("dedup_key")
    if dk is not None and not isinstance(dk, str):
        errors.append("'dedup_key' must be a string")
        dk = None
    elif isinstance(dk, str) and len(dk) > 255:
        errors.append("Length of 'dedup_key' is incorrect (should be at most 255 characters)")
    if action in ("acknowledge", "resolve") and not (isinstance(dk, str) and dk.strip()):
        errors.append("'dedup_key' is missing or blank")
    return action, dk


def _trigger(body: JsonObject, rk: str, dk: str | None, errors: list[str]) -> Alert:
    """The alert a trigger carries (InputError naming every problem of the event)."""
    payload = body.get("payload")
    if not isinstance(payload, dict):
        errors.append("'payload' is missing or not an object")
        payload = {}
    summary = _summary(payload, errors)
    src = payload.get("source")
    if src is not None and not isinstance(src, str):
        errors.append("'payload.source' is invalid (should be a string)")
    elif not isinstance(src, str) or not src.strip():
        errors.append("'payload.source' is missing or blank")
    _optional_texts(payload, "payload.", ("component", "group", "class"), errors)
    details = _details(payload, errors)
    sev = payload.get("severity")
    if not isinstance(sev, str) or not sev.strip():
        errors.append("'payload.severity' is missing or blank")
    elif sev not in SEVERITIES:
        errors.append("'payload.severity' is invalid (must be one of critical, error, warning, info)")
    ts = check_timestamp(payload, errors)
    links = link_list(body.get("links"), "links", "href", errors)
    images = link_list(body.get("images"), "images", "src", errors)
    client = _opt_text(body, "client", errors)
    client_url = _opt_text(body, "client_url", errors)
    if errors:
        raise InputError(errors)
    dk = dk or uuid.uuid4().hex
    labels = {f: payload[f] for f in _LABEL_FIELDS if isinstance(payload.get(f), str)}
    for k, v in details.items():
        if isinstance(v, (str, int, float)) and not isinstance(v, bool):
            labels.setdefault(k, str(v))
    return Alert(fingerprint=fingerprint(rk, dk), status="firing", labels=labels,
                 source="events_v2", summary=summary, severity=str(sev), starts_at=ts,
                 custom_details=details, links=links, images=images, dedup_key=dk,
                 routing_key=rk, client=client, client_url=client_url)


def parse(body: Any) -> Event:
    if not isinstance(body, dict):
        raise NotJSON("body must be a JSON object (a PagerDuty Events v2 event)")
    errors: list[str] = []
    rk = valid_routing_key(body, errors)
    action, dk = _action_and_key(body, errors)
    alert: Alert | None = None
    if action == "trigger":
        alert = _trigger(body, rk, dk, errors)
        dk = alert.dedup_key
    if errors:
        raise InputError(errors)
    assert isinstance(action, str) and isinstance(dk, str)
    if action == "resolve":
        alert = Alert(fingerprint=fingerprint(rk, dk), status="resolved", labels={},
                      source="events_v2", dedup_key=dk, routing_key=rk)
    return Event(action=action, routing_key=rk, dedup_key=dk, alert=alert)


def parse_change(body: Any) -> JsonObject:
    """A change event, validated; returned as the body to forward."""
    if not isinstance(body, dict):
        raise NotJSON("body must be a JSON object (a PagerDuty change event)")
    errors: list[str] = []
    valid_routing_key(body, errors)
    payload = body.get("payload")
    if not isinstance(payload, dict):
        errors.append("'payload' is missing or not an object")
        payload = {}
    _summary(payload, errors)
    check_timestamp(payload, errors)
    _optional_texts(payload, "payload.", ("source",), errors)
    _details(payload, errors)
    links = link_list(body.get("links"), "links", "href", errors)
    if errors:
        raise InputError(errors)
    forwarded: JsonObject = dict(body)
    if "links" in body:  # a link without an address is one PagerDuty refuses: left out
        forwarded["links"] = [lk for lk in links if lk["href"].strip()]
    return forwarded
