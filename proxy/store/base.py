"""The store protocol, split by capability; memory.py, sqlite.py and redis.py implement
all of it, and tests/contract runs one behaviour suite against each.

Scheduling rule applied by `record` (every store, atomically per request):
- a firing alert for an unknown group opens it, due at now + group_wait, in the urgent
  lane if the alert is critical (a group turns urgent when a critical alert joins);
- a resolved alert reaches every open group holding its fingerprint; when none does, each
  of its candidate groups (where today's rules would put it) that is neither open nor
  tombstoned gets its resolve event enqueued (the state was lost: a restart of the memory
  store, a deleted file), and is then tombstoned so the resolve goes once;
- a new alert, or one whose status changes, bumps the group's version and is noted in the
  alert's `changes`; in a group flushed before it makes the group due at
  max(now, last_flush + group_interval) (resolve_wait for a resolve), if earlier;
- every alert recorded refreshes the group's `last_seen`, in steps of model.SEEN_STEP: a
  refresh less than SEEN_STEP after the one stored leaves it (a sender that repeats a
  group's alerts many times a second, as Prometheus's batches of 64 or an HA pair's twin
  webhooks do, writes the group once a second, not per request; an unchanged repeat
  within the step writes nothing at all);
- an alert's stored JSON is replaced when the update is `full` (it has labels); an
  Events v2 resolve, which carries only its dedup_key, changes the status alone.

Costs: `record` is one round trip per request (Redis); `take` and `claim_due` use ordered
indexes, never a scan of the backlog; `stats` reads counters kept as work happens.
Deleting a group leaves a tombstone for TOMBSTONE_TTL seconds and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from proxy.model import Group, GroupMeta, OutEvent

__all__ = ["ALL_ALERTS", "CHANGES_KEPT", "COUNT_FIELDS", "COUNT_HOURS", "JOB_KEPT", "MEMO_KEPT", "TOMBSTONE_TTL", "BudgetStore", "Commit", "Entry",
           "Job", "JobStore", "KeyStats",
           "OutboxStore", "Resolved", "Stats", "Store", "Take", "Window", "WindowStore"]

TOMBSTONE_TTL = 3600.0  # seconds a deleted group's key is remembered (a late resolve is ignored)
COUNT_HOURS = 14 * 24  # hourly counters are kept this long
COUNT_FIELDS = 1000  # distinct counters per hour at most; the rest add up as "<metric>|(other)"
CHANGES_KEPT = 20  # status changes remembered per alert (flap detection)
# A finished job's id is remembered this long: PagerDuty retries a webhook for 48 h, and
# an event delivered again (or by two replicas' subscriptions) adds nothing.
JOB_KEPT = 7 * 86400.0
MEMO_KEPT = 30 * 86400.0  # a memo (an incident's Jira issue) is kept this long
ALL_ALERTS = 1 << 50  # claim_due's bound on alerts when none is given


@dataclass(slots=True)
class Job:
    """A unit of durable work besides PagerDuty's events (an action on an incident event,
    proxy/actions/): its JSON, the tries so far and the last error."""

    id: str
    blob: str
    tries: int = 0
    error: str = ""


@dataclass(slots=True)
class Entry:
    """One firing alert placed in one group, as `record` takes it."""

    group_key: str
    meta: GroupMeta  # what names the group (kept as given when it opens)
    fingerprint: str
    alert_json: str  # GroupAlert.to_json()
    group_wait: float
    group_interval: float
    resolve_wait: float
    max_alerts: int
    urgent: bool = False  # a critical alert: the group goes to the urgent lane


@dataclass(slots=True)
class Resolved:
    """A resolved alert: it reaches every open group holding its fingerprint.

    `candidates` are the groups today's rules would put it in, each with the resolve to
    send if the store has lost that group (see the scheduling rule)."""

    fingerprint: str
    alert_json: str
    full: bool  # False: only the status changes (an Events v2 resolve has no labels)
    candidates: list[tuple[str, OutEvent]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Recorded:
    """What `record` did: resolves sent for groups that are gone (`lost`), and the alerts
    whose status changed (each fingerprint once, whatever its number of groups): `fired`
    (new, or firing again after a resolve) and `resolved`. A redelivery of an alert in the
    same state is neither: the noise figures count transitions apart from deliveries."""

    lost: int = 0
    fired: int = 0
    resolved: int = 0


@dataclass(slots=True)
class Commit:
    """A flushed group's new state: stored (or deleted) with its events, atomically, only if
    its version is still `group.version`."""

    group: Group
    delete: bool
    events: list[OutEvent]


@dataclass(frozen=True, slots=True)
class Window:
    """The send budget of one routing key: at most `limit` events in any `seconds`;
    events less urgent than a critical trigger may use only `limit - reserve` of it."""

    limit: int = 120
    seconds: float = 60.0
    reserve: int = 10


@dataclass(slots=True)
class Take:
    """What `take` gives: an event leased to the caller, or none and how long to wait
    before anything could be taken (the budget, a pause, a backoff; inf: nothing queued)."""

    event: OutEvent | None
    wait: float
    stamp: int = 0  # the budget stamp the event spent (settled by done/retry/dead)


@dataclass(slots=True)
class KeyStats:
    depth: int
    oldest_enqueued_at: float
    sent_in_window: int


def add_key(keys: dict[str, KeyStats], name: str, k: KeyStats) -> None:
    """`k` into `keys` under its name: routing keys that share a name (the metrics' label)
    add up."""
    m = keys.get(name)
    keys[name] = k if m is None else KeyStats(m.depth + k.depth, min(m.oldest_enqueued_at, k.oldest_enqueued_at),
                                              m.sent_in_window + k.sent_in_window)


@dataclass(slots=True)
class Stats:
    """What the metrics show: counters kept by the store, O(routing keys) to read."""

    groups_open: int
    dead: int
    keys: dict[str, KeyStats]  # key name -> figures
    oldest_due: float | None = None  # the earliest due time of any group (flush lag)


class WindowStore(Protocol):
    async def record(self, entries: Sequence[Entry], resolved: Sequence[Resolved], now: float,
                     marks: Sequence[tuple[str, str]] = (), max_groups: int = 1 << 62) -> Recorded:
        """Atomically add `entries` to their groups (opening them as needed), apply
        `resolved` alerts by the scheduling rule, and record the inhibition `marks`
        (mark, fingerprint) of firing source alerts (a resolved fingerprint leaves every
        mark). One round trip for the whole request. Returns the resolves enqueued for
        lost groups and the alerts that changed state (Recorded). If the groups the entries open would make more than
        `max_groups`, nothing is recorded: StoreFull."""
        ...

    async def marked(self, marks: Sequence[str]) -> dict[str, set[str]]:
        """The fingerprints of firing source alerts that left each mark."""
        ...

    async def claim_due(self, now: float, lease: float, limit: int,
                        alerts: int = ALL_ALERTS) -> list[Group]:
        """Atomically take up to `limit` groups due at `now`, urgent lane first, pushing
        their due time to now + lease so that no other replica takes them meanwhile;
        returns them loaded. The claim ends before a group whose alerts would take the
        alerts it holds past `alerts` (semantics.claim_takes; the first group is always
        taken)."""
        ...

    async def commit(self, commits: Sequence[Commit], durable: bool = True) -> list[bool]:
        """For each commit, atomically: if the group's version is unchanged, store its
        flush state (due, triggered, grown, last_trigger_at, last_flush_at, state) with
        the version bumped, or delete it (leaving a tombstone), and enqueue its events.
        False for a group that changed meanwhile: load it and decide again.

        `durable=False`: a flush, which a power loss may undo as long as nothing durable
        followed it (it is then made again from the recorded alerts). The SQLite store
        then commits without waiting for the disk; the next durable write (a take before
        any event is sent, a record before any 2xx) syncs it with its own."""
        ...

    async def load(self, key: str) -> Group | None: ...

    async def groups(self) -> list[Group]: ...

    async def heads(self) -> list[Group]:
        """Every open group without its alerts (`n_alerts` says how many): cheap enough
        for a page that lists 10,000 groups."""
        ...

    async def load_many(self, keys: Sequence[str]) -> list[Group]:
        """These groups with their alerts (those still open), in the order given."""
        ...

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

    async def take(self, routing_key: str, now: float, lease: float, window: Window) -> Take:
        """Atomically: unless the key is paused, lease the most urgent due head of the
        key's lines (priority, then age) if the budget window has room for it, and stamp
        the window. The lease ends at now + lease (then the event is taken again)."""
        ...

    async def done(self, ev: OutEvent, stamp: int, now: float) -> None:
        """The event was delivered: drop it, settle its budget stamp at `now`."""
        ...

    async def retry(self, ev: OutEvent, stamp: int, not_before: float, error: str, count: bool,
                    now: float) -> None:
        """Give the event back, due again at not_before; `count` adds one attempt."""
        ...

    async def dead(self, ev: OutEvent, stamp: int, error: str, now: float) -> None:
        """Move the event to the dead letters (it stops blocking its dedup_key)."""
        ...

    async def pending(self, limit: int = 1000) -> list[OutEvent]: ...

    async def dead_letters(self, limit: int = 1000) -> list[OutEvent]: ...

    async def requeue_dead(self, seqs: Sequence[int] | None) -> int:
        """Put dead letters (all, or those with these seqs) back in the outbox."""
        ...

    async def release(self, ev: OutEvent, stamp: int, now: float) -> None:
        """Give back a leased event that was never sent (shutdown): due at once, its
        budget stamp returned, no attempt counted."""
        ...


class BudgetStore(Protocol):
    async def pause(self, routing_key: str, until: float) -> None:
        """Nothing of this key is taken before `until` (PagerDuty said 429)."""
        ...

    async def sent_in_window(self, routing_key: str, now: float, window: Window) -> int: ...


class CountStore(Protocol):
    async def add_counts(self, hour: int, counts: dict[str, float]) -> None:
        """Atomically add `counts` (field "metric|label..." -> amount) to the hour's
        counters (hour = epoch seconds // 3600); keeps COUNT_HOURS hours and at most
        COUNT_FIELDS fields an hour (the rest go to "<metric>|(other)")."""
        ...

    async def counts(self, since_hour: int) -> dict[int, dict[str, float]]:
        """Every hour's counters from `since_hour` on."""
        ...


class SilenceStore(Protocol):
    async def put_silence(self, sid: str, blob: str, ends_at: float) -> None:
        """Write a silence (proxy/silences.py's JSON), replacing one of the same id."""
        ...

    async def silences(self) -> list[str]:
        """Every silence kept, as written."""
        ...

    async def forget_silences(self, ended_before: float) -> int:
        """Forget the silences that ended before this time; how many."""
        ...


class HeartbeatStore(Protocol):
    async def heartbeat(self, name: str, kind: str, now: float, limit: float) -> bool:
        """Atomically apply semantics.heartbeat (`seen` or `check`) to a heartbeat's state:
        True for the one caller that must send (its resolve, or its trigger)."""
        ...

    async def heartbeats(self) -> dict[str, tuple[float, bool]]:
        """Every heartbeat's state: its last arrival (or first check), and paged."""
        ...


class JobStore(Protocol):
    """A queue of jobs with leases, as the outbox is for PagerDuty's events, without its
    lines and budget. A job is claimed by one caller at a time (its lease), done once."""

    async def add_job(self, job: Job, now: float) -> bool:
        """Queue a job, due now, unless its id is known (queued, dead, or done within
        JOB_KEPT): True when queued."""
        ...

    async def claim_jobs(self, now: float, lease: float, limit: int) -> list[Job]:
        """Up to `limit` due jobs (semantics.ready: due, or their lease ended), oldest due
        first, each leased until now + lease."""
        ...

    async def end_job(self, job: Job, how: str, now: float, due: float = 0.0) -> None:
        """`done`: forgotten, its id remembered for JOB_KEPT; `retry`: due again at `due`,
        with job.tries and job.error as given; `dead`: kept for dead_jobs."""
        ...

    async def dead_jobs(self, limit: int = 1000) -> list[Job]:
        """The dead jobs, oldest first."""
        ...

    async def memo(self, key: str, value: str | None, now: float) -> str | None:
        """With a value: keep it under `key` (MEMO_KEPT) and return it; without: what is
        kept, or None."""
        ...


class Store(WindowStore, OutboxStore, BudgetStore, CountStore, SilenceStore, HeartbeatStore, JobStore,
            Protocol):
    url: str

    async def first_time(self, key: str, now: float, ttl: float) -> bool:
        """Atomically note `key` (a webhook's id) for `ttl` seconds: True the first time,
        False while it is remembered (a retry, or another replica's delivery)."""
        ...

    async def stats(self, now: float, window: Window) -> Stats: ...

    async def ping(self) -> None:
        """Raise StoreError if the store cannot serve."""
        ...

    async def footprint(self) -> dict[str, int]:
        """How many objects (keys, rows) the store holds, by kind; for tests and ops, not
        for a hot path (Redis: a SCAN)."""
        ...

    async def close(self) -> None: ...


def capped(have: dict[str, float] | set[str], counts: dict[str, float]) -> dict[str, float]:
    """The counts to add to an hour that already has the fields `have`: a new field past
    COUNT_FIELDS goes to its metric's "(other)"."""
    out: dict[str, float] = {}
    n = len(have)
    for name, v in counts.items():
        if name not in have and name not in out:
            if n >= COUNT_FIELDS:
                name = name.split("|", 1)[0] + "|(other)"
            else:
                n += 1
        out[name] = out.get(name, 0) + v
    return out
