"""The store protocol, split by capability; memory.py and redis.py implement all of it.

Scheduling rule applied by `record` (both stores, atomically per request):
- a firing alert for an unknown group opens it, due at now + group_wait;
- a resolved alert for an unknown group is ignored (nothing was ever sent for it);
- a new alert, or one whose status changes, bumps the group's version; in a group that
  has triggered it makes the group due at max(now, last_flush + group_interval)
  (resolve_wait for a resolve), if earlier;
- an alert's stored JSON is replaced when the update is `full` (it has labels); an
  Events v2 resolve, which carries only its dedup_key, changes the status alone.
Alerts are kept as JSON text (a str: orjson's bytes keep a 4 KB buffer each), compact
and invisible to Python's garbage collector.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.model import Group, OutEvent

__all__ = ["BudgetStore", "Entry", "OutboxStore", "Resolved", "Stats", "Store", "WindowStore"]


@dataclass(slots=True)
class Entry:
    """One firing alert placed in one group, as `record` takes it."""

    group_key: str
    meta: dict[str, Any]  # rule, routing_key, key_name, group_labels
    fingerprint: str
    alert_json: str  # Alert.to_dict() plus placed_severity
    group_wait: float
    group_interval: float
    resolve_wait: float
    max_alerts: int
    status: str = "firing"


@dataclass(slots=True)
class Resolved:
    """A resolved alert: it reaches every open group holding its fingerprint."""

    fingerprint: str
    alert_json: str
    full: bool  # False: only the status changes (an Events v2 resolve has no labels)


@dataclass(slots=True)
class Stats:
    """What the metrics show, cheap to get at any size."""

    groups_open: int
    dead: int
    pending: list[tuple[str, float]]  # (key name, enqueued_at) of each waiting event


class WindowStore(Protocol):
    async def record(self, entries: Sequence[Entry], orphans: Sequence[Resolved],
                     now: float, marks: Sequence[tuple[str, str]] = ()) -> None:
        """Atomically add `entries` to their groups (opening them as needed), apply
        `orphans` (resolved alerts) to every open group holding their fingerprint, and
        record the inhibition `marks` (mark, fingerprint) of firing source alerts (an
        orphan's fingerprint leaves every mark). One round trip for the whole request."""
        ...

    async def marked(self, marks: Sequence[str]) -> dict[str, set[str]]:
        """The fingerprints of firing source alerts that left each mark."""
        ...

    async def claim_due(self, now: float, lease: float, limit: int) -> list[str]:
        """Atomically take up to `limit` groups due at `now`, pushing their due time to
        now + lease so no other replica takes them meanwhile."""
        ...

    async def load(self, key: str) -> Group | None: ...

    async def commit(self, g: Group, delete: bool, events: Sequence[OutEvent]) -> bool:
        """Atomically store g's flush state (due, triggered, grown, last_trigger_at,
        last_flush_at) or delete the group, and enqueue `events`, only if the group's
        version is still g.version. False means it changed: load and decide again."""
        ...

    async def groups(self) -> list[Group]: ...

    async def groups_of(self, fingerprint: str) -> list[Group]:
        """The open groups holding an alert with this fingerprint."""
        ...


class OutboxStore(Protocol):
    async def enqueue(self, events: Sequence[OutEvent]) -> None:
        """Append events; a pending trigger last in its dedup_key's line is replaced by
        a newer trigger for the same dedup_key (coalescing)."""
        ...

    async def outbox_keys(self) -> list[str]:
        """Routing keys with pending events."""
        ...

    async def take(self, routing_key: str, now: float, lease: float) -> OutEvent | None:
        """Atomically lease the most urgent event of `routing_key` that is first in its
        dedup_key's line and due; its lease ends at now + lease (then it is taken again)."""
        ...

    async def done(self, ev: OutEvent, now: float) -> None: ...

    async def retry(self, ev: OutEvent, not_before: float, error: str, count: bool,
                    now: float) -> None:
        """Give the event back, due again at not_before; `count` adds one attempt."""
        ...

    async def dead(self, ev: OutEvent, error: str, now: float) -> None:
        """Move the event to the dead letters (it stops blocking its dedup_key)."""
        ...

    async def pending(self) -> list[OutEvent]: ...

    async def dead_letters(self) -> list[OutEvent]: ...

    async def requeue_dead(self, seqs: Sequence[int] | None) -> int:
        """Put dead letters (all, or those with these seqs) back in the outbox."""
        ...


class BudgetStore(Protocol):
    async def acquire(self, routing_key: str, rate: float, burst: float, now: float) -> float:
        """Atomically take one token of the key's bucket: 0.0 if taken, else the seconds
        to wait. Shared by every replica on the same store."""
        ...

    async def pause(self, routing_key: str, until: float) -> None: ...

    async def paused_until(self, routing_key: str) -> float: ...


class Store(WindowStore, OutboxStore, BudgetStore, Protocol):
    url: str

    async def stats(self) -> Stats: ...

    async def ping(self) -> None:
        """Raise StoreError if the store cannot serve."""
        ...

    async def close(self) -> None: ...
