"""A Redis client from a store URL, for every way Redis is deployed:

    redis://[:password@]host:port/db                    one server
    rediss://host:port/db?ssl_ca_certs=ca.pem&ssl_certfile=c.pem&ssl_keyfile=k.pem
                                                        TLS (CA, client certificate)
    redis+sentinel://[:password@]h1:p1,h2:p2/service/db  Sentinel: follows the master
    redis+cluster://[:password@]h1:p1,h2:p2[?partitions=16]  a Cluster (the store in
                                                         partitions: redis_parts.py)
    unix:///run/redis.sock?db=0                          a local socket

TLS options (`ssl_*` query parameters) work with the Sentinel and Cluster forms too
(`rediss+sentinel://`, `rediss+cluster://`)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from proxy.errors import ConfigError

__all__ = ["SCHEMES", "connect"]

SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://", "rediss+sentinel://",
           "redis+cluster://", "rediss+cluster://")
_TIMEOUTS: dict[str, Any] = {"socket_timeout": 3, "socket_connect_timeout": 2}
POOL = 256
"""Connections to one Redis server at most. redis-py's pools refuse a call past their bound
(100 by default: MaxConnectionsError, a 503) rather than wait, and a storm of concurrent
requests makes more calls at once than that. To one Redis, a call past POOL waits for a
free connection (up to POOL_WAIT seconds); the Sentinel and Cluster pools cannot wait, and
take up to POOL_MORE each."""
POOL_WAIT = 10.0
POOL_MORE = 4096


class _CPacked:
    """Commands packed by hiredis (in C; redis-py's asyncio connections pack in Python).
    Same bytes; a flush's commit of 100 groups has ~800 arguments, and packing them was
    a fifth of the flusher's Python time. (The Cluster client makes its own connections
    and keeps redis-py's packer.)"""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str) and " " in args[0]:  # "SCRIPT LOAD": two words
            args = (*args[0].split(), *args[1:])
        return [hiredis.pack_command(args)]


_PACKED: dict[str, type[AbstractConnection]] = {}


def _packed(base: type[AbstractConnection]) -> type[AbstractConnection]:
    """`base` with hiredis's packer (one subclass per connection class)."""
    name = f"{base.__module__}.{base.__qualname__}"
    if name not in _PACKED:
        _PACKED[name] = type(base.__name__, (_CPacked, base), {})
    return _PACKED[name]


def _hosts(netloc: str, url: str) -> list[tuple[str, int]]:
    out = []
    for part in netloc.rpartition("@")[2].split(","):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError([f"--store: {url!r}: {part!r} is not host:port"])
        out.append((host.strip("[]"), int(port)))
    return out


def _options(query: str, tls: bool) -> dict[str, Any]:
    opts: dict[str, Any] = {k: unquote(v[0]) for k, v in parse_qs(query).items()}
    if tls:
        opts["ssl"] = True
    return opts


def connect(url: str) -> Any:
    """A redis.asyncio client (Redis, Sentinel master, or RedisCluster) for `url`."""
    u = urlsplit(url)
    tls = u.scheme.startswith("rediss")
    if u.scheme in ("redis", "rediss", "unix"):
        # One retry, on a new connection, of a command whose connection Redis had closed (a
        # restart leaves every pooled connection stale: each would fail one command). Not on
        # timeouts: a script that timed out may have run.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, health_check_interval=10, retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError],
            max_connections=POOL, timeout=POOL_WAIT, **_TIMEOUTS)
        # (its connections' class comes from the URL's scheme: TLS, socket)
        pool.connection_class = _packed(pool.connection_class)  # before any connection is made
        client = aioredis.Redis(connection_pool=pool)
        client.auto_close_connection_pool = True  # (as from_url's: closing the client closes it)
        return client
    password = unquote(u.password) if u.password else None
    opts = {**_options(u.query, tls), **_TIMEOUTS}
    if u.scheme.endswith("+sentinel"):
        parts = [p for p in u.path.split("/") if p]
        if not parts:
            raise ConfigError([f"--store: {url!r}: name the Sentinel service "
                               "(redis+sentinel://host:port/service/db)"])
        db = int(parts[1]) if len(parts) > 1 else 0
        hosts = _hosts(u.netloc, url)
        sentinel = Sentinel(hosts, sentinel_kwargs={**_TIMEOUTS}, password=password, db=db, **opts)  # type: ignore[no-untyped-call, unused-ignore]  # (typed from redis 8)
        managed = SentinelManagedSSLConnection if tls else SentinelManagedConnection
        return sentinel.master_for(parts[0], connection_class=_packed(managed), max_connections=POOL_MORE,
                                   **_TIMEOUTS)
    if u.scheme.endswith("+cluster"):
        nodes = [ClusterNode(h, p) for h, p in _hosts(u.netloc, url)]
        return RedisCluster(startup_nodes=nodes, password=password, max_connections=POOL_MORE, **opts)
    raise ConfigError([f"--store: {url!r} is not a Redis URL ({', '.join(SCHEMES)})"])
