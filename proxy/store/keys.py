"""Redis key names, all in one place. Every key starts with the hash-tagged prefix
`{prefix}` so that a whole proxy's keys live in one Redis Cluster slot (the Lua scripts
touch several keys at once). Routing keys never appear in key names: `rid` is a hash.
The Lua scripts build the same names; their headers (lib_windows.lua, lib_outbox.lua,
record.lua) list them."""

from __future__ import annotations

import hashlib

__all__ = ["group", "group_alerts", "group_status", "pause", "rid", "tagged"]


def tagged(prefix: str) -> str:
    return "{" + prefix + "}"


def rid(routing_key: str) -> str:
    """A routing key's id in key names: a hash, so the secret never shows in Redis."""
    return hashlib.sha256(routing_key.encode()).hexdigest()[:20]


def group(p: str, key: str) -> str:
    return f"{p}:g:{key}"


def group_alerts(p: str, key: str) -> str:
    return f"{p}:ga:{key}"


def group_status(p: str, key: str) -> str:
    return f"{p}:gs:{key}"


def pause(p: str, routing_key: str) -> str:
    return f"{p}:pause:{rid(routing_key)}"


def items(p: str) -> str:
    return f"{p}:ob:items"


def dead(p: str) -> str:
    return f"{p}:ob:dead"


def outbox_keys(p: str) -> str:
    return f"{p}:ob:keys"


def due(p: str) -> str:
    return f"{p}:due"


def fingerprint(p: str, fp: str) -> str:
    return f"{p}:fp:{fp}"


def inhibit_mark(p: str, mark: str) -> str:
    return f"{p}:inh:{mark}"
