"""The data that flows through the pipeline: one Alert type for every source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["SEVERITIES", "Action", "Alert", "OutEvent", "Status"]

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
    source: str  # alertmanager | datadog | events_v2
    annotations: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    severity: str | None = None
    starts_at: str = ""
    ends_at: str = ""
    custom_details: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, str]] = field(default_factory=list)
    images: list[dict[str, str]] = field(default_factory=list)
    dedup_key: str | None = None  # Events v2: the sender's own dedup_key
    routing_key: str | None = None  # Events v2: the sender's own routing key

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "summary": self.summary,
            "severity": self.severity,
            "source": self.source,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "custom_details": self.custom_details,
            "links": self.links,
            "images": self.images,
            "dedup_key": self.dedup_key,
        }


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
        """Lower goes first under backlog: resolves, then triggers by severity."""
        if self.action in ("resolve", "acknowledge"):
            return 0
        if self.action == "change":
            return 9
        try:
            return 1 + SEVERITIES.index(self.severity)
        except ValueError:
            return 5

    @property
    def path(self) -> str:
        return "/v2/change/enqueue" if self.action == "change" else "/v2/enqueue"
