"""What a record writes on a real redis-server, counted by its INFO commandstats: an alert
sent again unchanged (Alertmanager resends a group's alerts on every group_interval) writes
only its group's last_seen, and nothing at all within SEEN_STEP of the last one stored, so
neither the AOF nor a replica sees its JSON, status or size; and
what opens a group is sent only for a group the proxy has not seen open, so a group another
replica closed meanwhile is asked for and opened again whole."""

from __future__ import annotations

import asyncio
import dataclasses

from proxy.model import SEEN_STEP
from proxy.store import from_url
from proxy.store.redis_url import POOL
from tests.contract.test_store_contract import T0, entry, flushed
from tests.support.redis_server import cli, command_calls

WRITES = ("hset", "hdel", "sadd", "srem", "expire", "zadd", "zrem", "set", "del")


def writes(port: int) -> dict[str, int]:
    """Write commands run since the last `CONFIG RESETSTAT` (in scripts included)."""
    return {name: n for name, n in command_calls(port).items() if name in WRITES}


async def test_an_unchanged_repeat_writes_only_its_groups_last_seen_once_a_step(own_redis):
    store = from_url(own_redis.url, prefix="w")
    try:
        first = entry("g1", "a")
        await store.record([first, entry("g2", "b")], [], T0)
        cli(own_redis.port, "config", "resetstat")
        await store.record([first, entry("g2", "b")], [], T0 + SEEN_STEP / 2)
        assert writes(own_redis.port) == {}  # within the step: nothing
        await store.record([first, entry("g2", "b")], [], T0 + SEEN_STEP)
        assert writes(own_redis.port) == {"hset": 2}  # last_seen of g1 and g2, nothing else

        cli(own_redis.port, "config", "resetstat")
        changed = dataclasses.replace(first, alert_json=first.alert_json.replace(
            '"labels"', '"summary":"disk 97%","labels"'))
        await store.record([changed], [], T0 + 2)
        assert writes(own_redis.port) == {"hset": 2}  # g1's fields and the alert's new JSON
        g = await store.load("g1")
        assert g is not None and g.alerts["a"].alert.summary == "disk 97%" and g.last_seen == T0 + 2

        cli(own_redis.port, "config", "resetstat")
        await store.record([entry("g1", "c")], [], T0 + 3)  # a new alert: its size changes too
        assert writes(own_redis.port)["hset"] == 4  # fields, JSON, status, size
    finally:
        await store.close()


async def test_a_group_another_replica_closed_opens_again_whole(own_redis):
    one, other = from_url(own_redis.url, prefix="w"), from_url(own_redis.url, prefix="w")
    try:
        await one.record([entry("g1", "a")], [], T0)
        await one.record([entry("g1", "a")], [], T0 + 1)  # seen open: sent without its meta
        assert await flushed(other, "g1", T0 + 30, delete=True, trigger=False)
        assert await one.load("g1") is None
        cli(own_redis.port, "config", "resetstat")
        await one.record([entry("g1", "a")], [], T0 + 40)
        assert command_calls(own_redis.port)["evalsha"] == 2  # asked for the group's meta, then opened it
        g = await one.load("g1")
        assert g is not None and g.rule == "r" and g.group_labels == {"alertname": "g1"}
        assert g.opened_at == T0 + 40 and list(g.alerts) == ["a"]
        assert [h.key for h in await one.heads()] == ["g1"]
    finally:
        await one.close()
        await other.close()


async def test_a_group_this_proxy_closed_opens_again_in_one_call(own_redis):
    store = from_url(own_redis.url, prefix="w")
    try:
        await store.record([entry("g1", "a")], [], T0)
        assert await flushed(store, "g1", T0 + 30, delete=True, trigger=False)
        cli(own_redis.port, "config", "resetstat")
        await store.record([entry("g1", "a")], [], T0 + 40)
        assert command_calls(own_redis.port)["evalsha"] == 1
        g = await store.load("g1")
        assert g is not None and g.opened_at == T0 + 40
    finally:
        await store.close()


async def test_more_calls_at_once_than_the_pool_holds_wait_for_a_connection(own_redis):
    """A storm's concurrent requests make more store calls at once than a pool holds: they
    wait for a connection. (redis-py's default pool refuses past 100 with MaxConnectionsError,
    which the proxy answered 503.)"""
    store = from_url(own_redis.url, prefix="burst")
    try:
        n = POOL + 50
        out = await asyncio.gather(*(store.record([entry(f"g{i}", f"a{i}")], [], T0) for i in range(n)),
                                   return_exceptions=True)
        assert [x for x in out if isinstance(x, BaseException)] == []
        assert len(await store.heads()) == n
    finally:
        await store.close()
