"""Redis key names, all in one place: the Lua scripts never build one, they get every
key they touch in KEYS (Redis Cluster requires it). Every key starts with the
hash-tagged prefix `{prefix}`, so a whole store's keys live in one Cluster slot (a
partition's prefix is its tag: redis_parts.py).
Routing keys never appear in key names: `rid` is a hash.

    windows  g:<k> (hash: the group's fields)   ga:<k> (hash fp -> alert JSON)
             gs:<k> (hash fp -> status|change times)   due:u, due:n (zsets: urgent lane,
             the others; group key -> due)   fp:<fp> (set of group keys)
             tomb:<k> (a deleted group, with a TTL)
             inh:<mark> (set of source fps)   inhfp:<fp> (set of marks)
             heads (hash group key -> JSON: rule, labels, opened, triggered, state; the
             console's list, written when a group opens and at each commit)
             sizes (hash group key -> how many alerts it holds)
    outbox   ob:seq (counter)   ob:items (hash seq -> event JSON)   ob:dead (hash)
             ob:keys (hash rid -> routing key)   ob:names (hash rid -> key name)
             ob:lines:<rid> (hash dk -> "seq seq ...")   ob:ready:<rid> (zset seq ->
             priority*1e13+seq)   ob:wait:<rid> (zset seq -> time)   ob:age:<rid> (zset seq
             -> enqueued_at)
    budget   bud:<rid> (zset stamp -> send time)   bud:seq (counter)   pause:<rid>
    webhooks seen:<hash of the id> (with a TTL)
    jobs     jobs (hash id -> {"s": state, "b": blob, "t": tries, "e": error})
             jobs:due (zset id -> due or lease end, ready ones)   jobs:done (zset id ->
             when to forget it)   jobs:dead (zset id -> when it died)
             memo:<hash of the key> (a string, with a TTL)
    figures  count:<hour> (hash field -> amount, with a TTL of COUNT_HOURS)
"""

from __future__ import annotations

import functools
import hashlib

__all__ = ["Names"]


@functools.lru_cache(maxsize=4096)  # a handful of keys, looked up for every event
def rid(routing_key: str) -> str:
    """A routing key's id in key names: a hash, so the secret never shows in Redis."""
    return hashlib.sha256(routing_key.encode()).hexdigest()[:20]


class Names:
    """The key names of one proxy (one prefix)."""

    def __init__(self, prefix: str) -> None:
        self.p = "{" + prefix + "}"
        p = self.p
        self.due_urgent, self.due_other = f"{p}:due:u", f"{p}:due:n"
        self.heads, self.sizes = f"{p}:heads", f"{p}:sizes"
        self.ob_seq, self.ob_items, self.ob_dead = f"{p}:ob:seq", f"{p}:ob:items", f"{p}:ob:dead"
        self.ob_keys, self.ob_names = f"{p}:ob:keys", f"{p}:ob:names"
        self.bud_seq = f"{p}:bud:seq"
        self.silences, self.silence_ends = f"{p}:silences", f"{p}:silences:ends"
        self.beats = f"{p}:beats"
        self.jobs, self.job_due = f"{p}:jobs", f"{p}:jobs:due"
        self.job_done, self.job_dead = f"{p}:jobs:done", f"{p}:jobs:dead"

    def memo(self, key: str) -> str:
        return f"{self.p}:memo:{hashlib.sha256(key.encode()).hexdigest()[:32]}"

    def all(self) -> str:
        """A SCAN pattern of every key (footprint, tests)."""
        return self.p.replace("[", "\\[").replace("]", "\\]") + ":*"

    # -- windows ---------------------------------------------------------------------
    def group(self, key: str) -> tuple[str, str, str, str]:
        """g, ga, gs and tomb of a group."""
        p = self.p
        return f"{p}:g:{key}", f"{p}:ga:{key}", f"{p}:gs:{key}", f"{p}:tomb:{key}"

    def fingerprint(self, fp: str) -> str:
        return f"{self.p}:fp:{fp}"

    def mark(self, mark: str) -> str:
        return f"{self.p}:inh:{mark}"

    def marks_of(self, fp: str) -> str:
        return f"{self.p}:inhfp:{fp}"

    # -- outbox and budget -----------------------------------------------------------------
    def outbox(self, routing_key: str, r: str | None = None) -> tuple[str, str, str, str]:
        """lines, ready, wait and age of a routing key (or of its id `r`)."""
        r, p = r or rid(routing_key), self.p
        return f"{p}:ob:lines:{r}", f"{p}:ob:ready:{r}", f"{p}:ob:wait:{r}", f"{p}:ob:age:{r}"

    def budget(self, routing_key: str, r: str | None = None) -> str:
        return f"{self.p}:bud:{r or rid(routing_key)}"

    def pause(self, routing_key: str) -> str:
        return f"{self.p}:pause:{rid(routing_key)}"

    def count(self, hour: int) -> str:
        return f"{self.p}:count:{hour}"

    def seen(self, key: str) -> str:
        """A webhook id already applied (hashed: ids are the sender's text)."""
        return f"{self.p}:seen:{hashlib.sha256(key.encode()).hexdigest()[:32]}"
