"""Stores built from a URL: `memory://` (embedded, lost on restart), `sqlite://PATH`
(embedded, durable), or Redis in any of its forms (store.redis_url.SCHEMES)."""

from __future__ import annotations

from proxy.errors import ConfigError
from proxy.store.base import Commit, Entry, Recorded, Resolved, Stats, Store, Take, Window

__all__ = ["Commit", "Entry", "Recorded", "Resolved", "Stats", "Store", "Take", "Window", "from_url"]


def from_url(url: str, prefix: str = "alert-proxy") -> Store:
    if url.startswith("memory://"):
        from proxy.store.memory import MemoryStore

        return MemoryStore()
    if url.startswith("sqlite://"):
        from proxy.store.sqlite import SqliteStore

        return SqliteStore(url)
    from proxy.store.redis_url import SCHEMES

    if url.startswith(SCHEMES):
        from proxy.store.redis_parts import PartitionedStore

        return PartitionedStore(url, prefix=prefix)
    raise ConfigError([f"--store: {url!r} is not a store URL (memory://, sqlite:///path/state.db, "
                       "redis://host:port/db, rediss://, redis+sentinel://, redis+cluster://)"])
