"""How the Redis store calls its Lua scripts: the scripts and their libraries, the KEYS
of a call (each declared once, named by index in ARGV), and the groups' and events'
encodings the scripts read and write."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Sequence
from importlib import resources
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson
from redis.exceptions import RedisError

from proxy.errors import ConfigError, StoreError
from proxy.model import Group, GroupAlert, OutEvent
from proxy.state import GroupState
from proxy.store import keys
from proxy.store.codec import split_status

P = ParamSpec("P")
T = TypeVar("T")

GROUP_TTL = 7 * 86400  # a group nobody touched for a week is forgotten
LIBS = {"add_counts": "", "record": "lib_windows+lib_outbox", "claim_due": "", "commit": "lib_outbox",
         "enqueue": "lib_outbox", "take": "", "done": "lib_outbox", "dead": "lib_outbox",
         "retry": "lib_outbox", "release": "lib_outbox", "requeue": "lib_outbox", "pause": "", "load": "",
        "heartbeat": "", "job_add": "", "job_claim": "", "layout": ""}


def lua(name: str) -> str:
    pkg = resources.files("proxy.store") / "lua"
    libs = [(pkg / f"{lib}.lua").read_text() for lib in filter(None, LIBS[name].split("+"))]
    return "\n".join([*libs, (pkg / f"{name}.lua").read_text()])


FIELDS = ("rule", "routing_key", "key_name", "group_labels", "triggered", "grown", "overflow",
           "version", "group_interval", "resolve_wait", "opened_at", "last_trigger_at",
           "last_flush_at", "last_seen", "urgent", "state", "n")  # what load.lua reads of a group


def pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """A flat HGETALL reply from a script as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def wrapped(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Redis and socket errors become StoreError (the cause is chained)."""

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except (RedisError, OSError) as e:
            raise StoreError(f"redis: {type(e).__name__}: {e}") from e

    return call


def event_fields(ev: OutEvent) -> dict[str, Any]:
    """An outbox item's fields but its seq, lease and body (lib_outbox.lua)."""
    return {"rid": keys.rid(ev.routing_key), "rk": ev.routing_key, "dk": ev.dedup_key,
            "action": ev.action, "severity": ev.severity, "prio": ev.priority,
            "key_name": ev.key_name, "enqueued_at": ev.enqueued_at, "attempts": ev.attempts,
            "not_before": ev.not_before, "last_error": ev.last_error}


def event_json(ev: OutEvent) -> dict[str, Any]:
    """An event as a table for a script (record.lua's lost resolves)."""
    return {**event_fields(ev), "body": ev.body.decode()}


def arg(strs: list[bytes], value: bytes) -> int:
    """`value` as a script's ARGV (after the request, ARGV[1]); returns its index."""
    strs.append(value)
    return len(strs) + 1


def events(evs: Sequence[OutEvent], kl: Keys, n: keys.Names, strs: list[bytes]) -> list[Any]:
    """Events for commit.lua and enqueue.lua (lib_outbox.lua: ob_events). The item is made
    here but its seq, and its body goes as a JSON string: the script never encodes them."""
    out = []
    for e in evs:
        f = event_fields(e)
        small = orjson.dumps({**f, "lease": 0})
        out.append([*kl.outbox(n, e.routing_key), f["rid"], e.routing_key, e.dedup_key, e.action,
                    e.severity, e.priority, e.key_name, e.enqueued_at, e.not_before,
                    arg(strs, small), arg(strs, orjson.dumps(e.body.decode()))])
    return out


def head(rule: str, key_name: str, labels: Any, opened_at: float, triggered: bool,
          state: GroupState) -> str:
    """A group's entry in the heads index: what the console lists and filters on."""
    return orjson.dumps({"rule": rule, "key_name": key_name, "group_labels": labels,
                         "opened_at": opened_at, "triggered": triggered,
                         "state": state.shown()}).decode()


def text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def event(raw: bytes | str) -> OutEvent:
    d = orjson.loads(raw)
    return OutEvent(routing_key=d["rk"], dedup_key=d["dk"], action=d["action"],
                    severity=d["severity"], body=d["body"].encode(), key_name=d["key_name"],
                    seq=int(d["seq"]), attempts=int(d["attempts"]),
                    not_before=float(d["not_before"]), enqueued_at=float(d["enqueued_at"]),
                    last_error=d["last_error"] or "")


class Keys:
    """The KEYS of one script call: fixed ones first, then each declared once; ARGV names
    them by their 1-based index."""

    def __init__(self, fixed: Sequence[str]) -> None:
        self.keys: list[str] = []
        self._at: dict[str, int] = {}
        self._outbox: dict[str, list[int]] = {}
        for k in fixed:
            self.idx(k)

    def idx(self, name: str) -> int:
        i = self._at.get(name)
        if i is None:
            self.keys.append(name)
            i = self._at[name] = len(self.keys)
        return i

    def many(self, names: Sequence[str]) -> list[int]:
        return [self.idx(n) for n in names]

    def outbox(self, n: keys.Names, routing_key: str) -> list[int]:
        """The indexes of a routing key's outbox keys (looked up once per call)."""
        found = self._outbox.get(routing_key)
        if found is None:
            found = self._outbox[routing_key] = self.many(n.outbox(routing_key))
        return found


def wait_option(url: str) -> tuple[str, int, int]:
    """`?wait_replicas=N[&wait_timeout_ms=T]`: (the URL without them, N, T)."""
    plain, (n, t) = _pop_ints(url, ("wait_replicas", 0), ("wait_timeout_ms", 1000))
    return plain, n, t


def partitions_option(url: str) -> tuple[str, int]:
    """`?partitions=N`: (the URL without it, N). A Cluster's default is 16, anything
    else's 1 (one slot: keys.py)."""
    default = 16 if urlsplit(url).scheme.endswith("+cluster") else 1
    plain, (n,) = _pop_ints(url, ("partitions", default))
    if not 1 <= n <= 256:
        raise ConfigError([f"--store: partitions={n}: give 1 to 256"])
    return plain, n


def _pop_ints(url: str, *names: tuple[str, int]) -> tuple[str, list[int]]:
    u = urlsplit(url)
    q = parse_qs(u.query)
    out = []
    for name, default in names:
        raw = q.pop(name, [str(default)])[0]
        if not raw.isdigit():
            raise ConfigError([f"--store: {name}={raw!r} is not a whole number"])
        out.append(int(raw))
    return urlunsplit(u._replace(query=urlencode(q, doseq=True))), out


def group(key: str, f: list[bytes], alerts: list[bytes], statuses: list[bytes]) -> Group:
    """A group from its hash's FIELDS, its alerts' JSON and their statuses (flat pairs)."""
    (rule, routing_key, key_name, labels, triggered, grown, overflow, version, group_interval,
     resolve_wait, opened_at, last_trigger_at, last_flush_at, last_seen, urgent, state, n) = f
    g = Group(key=key, rule=rule.decode(), routing_key=routing_key.decode(),
              key_name=key_name.decode(), group_labels=orjson.loads(labels),
              triggered=triggered == b"1", grown=grown == b"1", overflow=int(overflow),
              version=int(version), group_interval=float(group_interval),
              resolve_wait=float(resolve_wait), opened_at=float(opened_at),
              last_trigger_at=float(last_trigger_at), last_flush_at=float(last_flush_at),
              last_seen=float(last_seen), urgent=urgent == b"1", state=GroupState.from_json(state),
              n_alerts=int(n or 0))
    status = pairs(statuses)
    for fp, raw in zip(alerts[::2], alerts[1::2], strict=True):
        st, changes = split_status(status.get(fp, b"firing").decode())
        g.alerts[fp.decode()] = GroupAlert.from_json(raw, st, changes)
    return g


_KINDS = {"g": "groups", "fp": "fingerprints", "tomb": "tombstones", "inh": "marks",
          "bud": "budgets", "seen": "seen", "count": "count_hours"}


def count_key(out: dict[str, int], name: str) -> None:
    """Count one key (its name after the prefix) by kind, for the store's footprint."""
    kind, _, rest = name.partition(":")
    if kind == "ob":
        out["lines"] += rest.startswith("lines:")
    elif kind in _KINDS and (kind, rest) != ("bud", "seq"):
        out[_KINDS[kind]] = out.get(_KINDS[kind], 0) + 1
