"""Stores built from a URL: `memory://` (embedded) or `redis://host:port/db` / `rediss://`."""

from __future__ import annotations

from proxy.errors import ConfigError
from proxy.store.base import Entry, Resolved, Stats, Store

__all__ = ["Entry", "Resolved", "Stats", "Store", "from_url"]


def from_url(url: str, prefix: str = "alert-proxy") -> Store:
    if url.startswith("memory://"):
        from proxy.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        from proxy.store.redis import RedisStore

        return RedisStore(url, prefix=prefix)
    raise ConfigError([f"--store: {url!r} is not a store URL (memory:// or redis://host:port/db)"])
