"""PagerDuty webhooks v3 (PagerDuty -> us): the signature, then one incident event.

`X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]` is the hex HMAC-SHA256 of the raw body
keyed by the subscription's secret; several signatures come while a secret is rotated.
The body is accepted when any signature matches any configured secret, compared in
constant time. See ../shared/pagerduty/FACTS.md."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from proxy.errors import InputError, NotJSON, Unauthorized

__all__ = ["INCIDENT_EVENTS", "IncidentEvent", "parse", "sign", "verify"]

# The incident events that change a group's PagerDuty state; others are counted, ignored.
INCIDENT_EVENTS = ("incident.triggered", "incident.acknowledged", "incident.unacknowledged",
                   "incident.resolved", "incident.reopened")


@dataclass(slots=True)
class IncidentEvent:
    id: str
    event_type: str
    occurred_at: float  # seconds since the epoch
    incident_id: str
    incident_key: str | None  # our dedup_key, when the incident came from an event of ours
    status: str
    agent: str  # who did it (a user's name), for the status API
    data: dict[str, Any] | None = None  # the event's data as sent (actions read it)


def sign(secret: str, body: bytes) -> str:
    """The signature header PagerDuty sends for `body` (also for tests and examples)."""
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secrets: list[str], header: str | None, body: bytes) -> None:
    """Unauthorized naming the problem unless a signature matches a secret."""
    if not secrets:
        raise InputError(["PagerDuty webhooks are off: no secret is configured "
                          "(--pagerduty-webhook-secret)"], 403)
    if not header:
        raise Unauthorized(["the X-PagerDuty-Signature header is missing (unsigned request)"])
    given = [s.strip()[3:] for s in header.split(",") if s.strip().startswith("v1=")]
    if not given:
        raise Unauthorized(["X-PagerDuty-Signature has no v1= signature"])
    ok = False
    for secret in secrets:
        want = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        for sig in given:  # every comparison runs: no early exit to time
            ok |= hmac.compare_digest(want.encode(), sig.encode())
    if not ok:
        raise Unauthorized(["X-PagerDuty-Signature does not match any configured secret"])


def _time(text: Any, where: str, errors: list[str]) -> float:
    if not isinstance(text, str):
        errors.append(f"'{where}' is missing or not a string")
        return 0.0
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        errors.append(f"'{where}' is not an ISO 8601 date-time")
        return 0.0


def parse(raw: bytes) -> IncidentEvent | None:
    """The incident event of a verified body; None for an event of another resource
    (a service update, say: valid, but nothing for us). InputError for a body that is not
    a webhook v3 event."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise NotJSON() from None
    event = body.get("event") if isinstance(body, dict) else None
    if not isinstance(event, dict):
        raise InputError(["'event' is missing or not an object (a PagerDuty webhook v3 body)"])
    errors: list[str] = []
    for key in ("id", "event_type", "resource_type"):
        if not isinstance(event.get(key), str) or not event[key]:
            errors.append(f"'event.{key}' is missing or not a string")
    occurred = _time(event.get("occurred_at"), "event.occurred_at", errors)
    data = event.get("data")
    if not isinstance(data, dict):
        errors.append("'event.data' is missing or not an object")
    if errors:
        raise InputError(errors)
    assert isinstance(data, dict)
    if event["resource_type"] != "incident":
        return None
    agent = event.get("agent")
    who = agent.get("summary") if isinstance(agent, dict) else None
    who = who if isinstance(who, str) else ""
    ref = data.get("incident")
    if data.get("type", "incident") != "incident" and isinstance(ref, dict):
        # a note, a responder, a status update: about the incident it references
        if not isinstance(ref.get("id"), str):
            raise InputError(["'event.data.incident.id' is missing or not a string"])
        return IncidentEvent(id=event["id"], event_type=event["event_type"], occurred_at=occurred,
                             incident_id=ref["id"], incident_key=None, status="", agent=who, data=data)
    for field in ("id", "status"):
        if not isinstance(data.get(field), str):
            errors.append(f"'event.data.{field}' is missing or not a string")
    incident_key = data.get("incident_key")
    if incident_key is not None and not isinstance(incident_key, str):
        errors.append("'event.data.incident_key' must be a string")
    if errors:
        raise InputError(errors)
    return IncidentEvent(id=event["id"], event_type=event["event_type"], occurred_at=occurred,
                         incident_id=data["id"], incident_key=incident_key, status=data["status"],
                         agent=who, data=data)
