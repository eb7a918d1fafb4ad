"""The data that flows through the pipeline, at the bottom of the house: every stage and
every store imports it, it imports nothing of theirs.

    Alert        one alert from any source, normalized
    GroupAlert   an alert as a group holds it: the alert, its placed severity, its changes
    GroupMeta    what names a group: its rule, routing key (and its name), group_by values
    Group        one window (rule, routing key, group_by values) and its state (state.py)
    Flush        what flushing a group decided
    OutEvent     one call to PagerDuty waiting in the outbox
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Literal

import orjson

from proxy.jsontypes import JsonObject
from proxy.state import GroupState

__all__ = ["SEVERITIES", "URGENT", "Action", "Alert", "Flush", "Group", "GroupAlert", "GroupMeta",
           "OutEvent", "Status", "priority"]

Status = Literal["firing", "resolved"]
Action = Literal["trigger", "acknowledge", "resolve", "change"]
SEVERITIES: tuple[str, ...] = ("critical", "error", "warning", "info")


@dataclass(slots=True)
class Alert:
    """One alert from any source, normalized.

    `labels` is the one view rules match on: Alertmanager labels, Datadog tags, or the
    Events v2 payload fields and scalar custom_details."""

    fingerprint: str
    status: Status
    labels: dict[str, str]
    source: str  # alertmanager | datadog | events_v2 | webhook:<name>
    annotations: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    severity: str | None = None
    starts_at: str = ""
    ends_at: str = ""
    custom_details: JsonObject = field(default_factory=dict)
    links: list[dict[str, str]] = field(default_factory=list)
    images: list[dict[str, str]] = field(default_factory=list)
    dedup_key: str | None = None  # Events v2: the sender's own dedup_key
    routing_key: str | None = None  # Events v2: the sender's own routing key
    client: str | None = None  # Events v2: the sender's own client and client_url
    client_url: str | None = None

    def to_dict(self) -> JsonObject:
        """What a group keeps of the alert (never the routing key: it is a secret); empty
        fields are left out (`from_dict` fills them in)."""
        d: JsonObject = {"fingerprint": self.fingerprint, "status": self.status,
                         "labels": self.labels, "source": self.source}
        # (one test per field, not a loop of getattr: this runs for every alert recorded)
        if self.annotations:
            d["annotations"] = self.annotations
        if self.summary:
            d["summary"] = self.summary
        if self.severity:
            d["severity"] = self.severity
        if self.starts_at:
            d["starts_at"] = self.starts_at
        if self.ends_at:
            d["ends_at"] = self.ends_at
        if self.custom_details:
            d["custom_details"] = self.custom_details
        if self.links:
            d["links"] = self.links
        if self.images:
            d["images"] = self.images
        if self.dedup_key:
            d["dedup_key"] = self.dedup_key
        if self.client:
            d["client"] = self.client
        if self.client_url:
            d["client_url"] = self.client_url
        return d

    @classmethod
    def from_dict(cls, d: JsonObject) -> Alert:
        """From `to_dict`'s output (the fields it left out take their defaults)."""
        d.pop("placed_severity", None)
        d.setdefault("source", "")
        return cls(**d)


@dataclass(slots=True)
class GroupAlert:
    """An alert as its group holds it. Stores keep `to_json()` text and the status apart
    (an Events v2 resolve changes the status alone)."""

    alert: Alert
    severity: str  # the severity its rule placed it with
    changes: tuple[float, ...] = ()  # times its status changed, oldest first (bounded)

    @property
    def status(self) -> Status:
        return self.alert.status

    @property
    def firing(self) -> bool:
        return self.alert.status == "firing"

    @property
    def labels(self) -> dict[str, str]:
        return self.alert.labels

    def to_json(self) -> str:
        return orjson.dumps(self.to_dict()).decode()

    @classmethod
    def from_json(cls, text: str | bytes, status: str, changes: tuple[float, ...] = ()) -> GroupAlert:
        d = orjson.loads(text)
        d["status"] = status
        severity = d.get("placed_severity") or "error"
        return cls(Alert.from_dict(d), severity, changes)

    def to_dict(self) -> JsonObject:
        """As the status API shows it."""
        d = self.alert.to_dict()  # (a dict of its own)
        d["placed_severity"] = self.severity
        return d


@dataclass(frozen=True, slots=True)
class GroupMeta:
    """What names a group, as `record` takes it with each alert: set when it opens."""

    rule: str
    routing_key: str
    key_name: str
    group_labels: dict[str, str]


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
    alerts: dict[str, GroupAlert] = field(default_factory=dict)  # fingerprint -> alert
    opened_at: float = 0.0
    due: float = 0.0
    triggered: bool = False
    grown: bool = False  # a firing alert joined after the last trigger
    last_trigger_at: float = 0.0
    last_flush_at: float = 0.0
    overflow: int = 0  # alerts refused by max_alerts
    version: int = 0  # bumped by every change: a commit of an older version is refused
    last_seen: float = 0.0  # when a source last sent any of its alerts (to SEEN_STEP)
    urgent: bool = False  # holds a critical alert: flushed before the others
    state: GroupState = field(default_factory=GroupState)  # the pipeline's own; a blob to stores
    n_alerts: int = 0  # how many alerts it holds (set by the store; `alerts` may be left empty)

    def firing(self) -> list[GroupAlert]:
        return [a for a in self.alerts.values() if a.firing]

    def to_dict(self) -> JsonObject:
        """As the status API shows it: the routing key is left out (a secret)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("alerts", "key",
                                                                                  "routing_key", "state")}
        d["state"] = self.state.to_dict()
        d["dedup_key"] = self.key
        d["alerts"] = [a.to_dict() for a in self.alerts.values()]
        d["n_alerts"] = len(self.alerts) or self.n_alerts
        return d


@dataclass(slots=True)
class Flush:
    """The outcome of flushing a group: what to send, and the group's next state."""

    actions: list[str]  # "trigger" and/or "resolve"
    delete: bool
    next_due: float


SEEN_STEP = 1.0
"""Seconds: a group's last_seen moves in steps of at least this (store.base's rule), so a
sender repeating a group's alerts many times a second writes the group once a second. It
is the last refresh stored, up to SEEN_STEP before the last one received: `stale_after`
counts from it, so a group may go stale up to a second early (for a rule's hours of quiet,
nothing; a rule test's `at:` stays exact)."""
URGENT = 0  # the priority of a critical trigger: it may spend the budget's reserve


def priority(action: str, severity: str) -> int:
    """Lower goes first under backlog: critical triggers, then resolves and
    acknowledgements (they close pages), then the other triggers by severity, change
    events last."""
    if action in ("resolve", "acknowledge"):
        return 1
    if action == "change":
        return 9
    if severity == "critical":
        return URGENT
    try:
        return 1 + SEVERITIES.index(severity)
    except ValueError:
        return 5


@dataclass(slots=True)
class OutEvent:
    """One call to PagerDuty waiting in the outbox.

    `body` is the exact JSON to post (it holds the routing key: the outbox is trusted,
    logs and APIs only ever show `key_name` or the masked key)."""

    routing_key: str
    dedup_key: str
    action: Action
    severity: str
    body: bytes
    key_name: str = ""
    seq: int = 0
    attempts: int = 0
    not_before: float = 0.0
    enqueued_at: float = 0.0
    last_error: str = ""

    @property
    def priority(self) -> int:
        return priority(self.action, self.severity)

    @property
    def path(self) -> str:
        return "/v2/change/enqueue" if self.action == "change" else "/v2/enqueue"
