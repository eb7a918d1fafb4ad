"""One group's flush while it is planned: what the stages of proxy/stages.py read and
change, in order, before the batch engine (proxy/flush.py) commits it."""

from __future__ import annotations

from dataclasses import dataclass, field

from proxy.correlate import Page
from proxy.model import Flush, Group, OutEvent
from proxy.remediate import Call
from proxy.rules.types import Rule
from proxy.store import Commit
from proxy.storm import Delta

__all__ = ["Plan"]


@dataclass(slots=True)
class Plan:
    group: Group  # as claimed, changed into its next state by the stages
    rule: Rule
    now: float
    muted: dict[str, str]  # firing alerts that must not page now, with the reason
    held_before: str  # why it did not page before this flush
    flush: Flush = field(default_factory=lambda: Flush([], False, 0.0))  # what it sends, and when next
    page: Page = field(default_factory=Page)  # why it pages, or why it does not
    held_now: str = ""  # held for a reason its page does not say (folded)
    details: dict[str, object] = field(default_factory=dict)  # its trigger's custom_details
    summary: str | None = None  # its trigger's summary, when not the rule's (a storm's)
    events: list[OutEvent] = field(default_factory=list)
    call: Call | None = None  # the remediation call it claimed (made once it is committed)
    storm: Delta | None = None  # its change of its storm's figures (a fold, an unfold)

    @property
    def commit(self) -> Commit:
        return Commit(self.group, self.flush.delete, self.events)
