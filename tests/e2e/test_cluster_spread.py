"""Redis Cluster spreads the load: the store's partitions (redis_parts.py) put each routing
key's groups and outbox on one of a real 3-master cluster's masters, so with 12 routing
keys every master does a share of the work; and a proxy refuses data laid out in another
number of partitions, or a running proxy set to another number, naming the fix."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from proxy.errors import StoreError
from proxy.model import GroupMeta, OutEvent
from proxy.store import Entry, Window, from_url
from proxy.store.redis_parts import LIVE_TTL
from tests.conftest import wait_for, write_rules
from tests.support.net import free_port, wait_port
from tests.support.proxies import all_resolved, until_accepted
from tests.support.redis_server import RedisCluster, cli, command_calls

TEAMS = 12
KEYS = [hashlib.md5(f"team {t}".encode()).hexdigest() for t in range(TEAMS)]  # 32 characters
RULES = "defaults:\n  routing_key: ${PD_ROUTING_KEY}\n  group_wait: 1s\n  group_interval: 1s\n" + \
    "  group_by: [alertname, service]\nrules:\n" + "".join(
        f"  - name: team{t}\n    match: ['team=\"t{t}\"']\n    routing_key: {KEYS[t]}\n"
        for t in range(TEAMS))


def _commands(port: int) -> int:
    """Commands a node ran (INFO and the cluster's own chatter aside)."""
    return sum(n for name, n in command_calls(port).items()
               if not name.startswith(("info", "ping", "cluster", "config", "command")))


async def test_twelve_routing_keys_spread_over_three_masters(tmp_path, proxy_process, fake_pd):
    cluster = RedisCluster(tmp_path / "cluster")
    cluster.start()
    try:
        port = free_port()
        rules = write_rules(tmp_path / "rules", RULES)
        proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--store", cluster.url,
                      "--upstream", fake_pd.url)
        await asyncio.to_thread(wait_port, port)
        for n in cluster.nodes:
            cli(n.port, "config", "resetstat")
        alerts = [{"labels": {"alertname": f"Down{i % 3}", "service": f"svc{i % 2}", "team": f"t{t}",
                              "instance": f"i{i}"}, "fingerprint": f"t{t}-{i}"}
                  for t in range(TEAMS) for i in range(12)]
        url = f"http://127.0.0.1:{port}/v1/alertmanager"
        await until_accepted(url, alerts, "firing")
        want = TEAMS * 6  # groups: 3 alertnames x 2 services per team
        await wait_for(lambda: len({r.body["dedup_key"] for r in fake_pd.accepted()}) == want, timeout=60)
        await until_accepted(url, alerts, "resolved")
        await wait_for(lambda: all_resolved(fake_pd), timeout=60)
        assert {r.body["routing_key"] for r in fake_pd.accepted()} == set(KEYS)
        assert fake_pd.violations == [] and fake_pd.count(429) == 0
        calls = [_commands(n.port) for n in cluster.nodes]
        shares = [c / sum(calls) for c in calls]
        assert min(shares) >= 0.20, (calls, shares)
        # and the routing keys' own data: each master holds budgets of some of them
        budgets = [sum(1 for k in cli(n.port, "--scan", "--pattern", "*:bud:*").split() if not k.endswith(":seq"))
                   for n in cluster.nodes]
        assert sum(budgets) == TEAMS and min(budgets) >= 1, budgets
    finally:
        cluster.stop()


def _entry(key: str, routing_key: str) -> Entry:
    return Entry(group_key=key, meta=GroupMeta("r", routing_key, "PD", {"alertname": key}),
                 fingerprint=f"fp-{key}", alert_json='{"fingerprint":"x","status":"firing","labels":{}}',
                 group_wait=30.0, group_interval=300.0, resolve_wait=300.0, max_alerts=10)


@pytest.mark.parametrize("then", [4, 1])
async def test_data_in_another_layout_is_refused_by_name(own_redis, then):
    first = 1 if then == 4 else 4
    old = from_url(own_redis.url + f"?partitions={first}", prefix="layout")
    await old.record([_entry(f"g{i}", KEYS[i]) for i in range(6)], [], 1000.0)
    await old.close()
    cli(own_redis.port, "del", "{layout}:layout:live")  # (its proxies stopped LIVE_TTL ago)
    new = from_url(own_redis.url + f"?partitions={then}", prefix="layout")
    refusal = rf"in {first} partition\(s\).*set to {then}: add \?partitions={first}"
    with pytest.raises(StoreError, match=refusal):
        await new.ping()  # /readyz and `doctor`
    with pytest.raises(StoreError, match=refusal):
        await new.record([_entry("g9", KEYS[9])], [], 1001.0)
    await new.close()
    again = from_url(own_redis.url + f"?partitions={first}", prefix="layout")  # the old number works
    assert len(await again.groups()) == 6
    await again.close()


async def test_an_empty_store_takes_a_new_layout(own_redis):
    one = from_url(own_redis.url, prefix="fresh")
    await one.ping()
    await one.close()
    assert cli(own_redis.port, "--scan", "--pattern", "{fresh}*").split() == []  # a ping writes nothing
    many = from_url(own_redis.url + "?partitions=8", prefix="fresh")
    await many.record([_entry(f"g{i}", KEYS[i]) for i in range(12)], [], 1000.0)
    assert len(await many.groups()) == 12
    used = {k.split("}")[0] for k in cli(own_redis.port, "--scan", "--pattern", "{fresh*:g:*").split()}
    assert len(used) > 1, used  # more than one partition holds groups
    await many.close()


async def test_partitions_read_as_one_store(redis_cluster_server):
    """Figures, dead letters and their seqs across the partitions of 12 keys named alike."""
    s = from_url(redis_cluster_server.url, prefix="one-store")
    win = Window(limit=120, seconds=60.0, reserve=10)
    await s.enqueue([OutEvent(k, f"d{i}", "trigger", "error", b"{}", key_name="PD", enqueued_at=1000.0)
                     for i, k in enumerate(KEYS)])
    stats = await s.stats(1000.0, win)
    assert stats.keys["PD"].depth == TEAMS and stats.keys["PD"].oldest_enqueued_at == 1000.0
    for k in KEYS:
        t = await s.take(k, 1001.0, 30.0, win)
        assert t.event is not None and t.event.routing_key == k
        await s.dead(t.event, t.stamp, "refused", 1001.0)
    dead = await s.dead_letters()
    assert len({e.seq for e in dead}) == TEAMS and {e.routing_key for e in dead} == set(KEYS)
    again = dead[5]
    assert await s.requeue_dead([again.seq]) == 1
    left = await s.dead_letters()
    assert again.seq not in {e.seq for e in left} and len(left) == TEAMS - 1
    [back] = await s.pending()
    assert (back.routing_key, back.dedup_key) == (again.routing_key, again.dedup_key)
    await s.close()


@pytest.mark.parametrize("numbers", [(2, 4), (4, 1), (1, 8)])
async def test_two_proxies_set_to_different_numbers_never_both_pass(own_redis, numbers):
    """Started together on an empty prefix, one takes the layout and the other is refused:
    never both (each checks and takes in one script)."""
    prefix = f"race{numbers[0]}-{numbers[1]}"
    stores = [from_url(own_redis.url + f"?partitions={n}", prefix=prefix) for n in numbers]
    try:
        out = await asyncio.gather(*(s.record([_entry(f"g{i}", KEYS[i]) for i in range(4)], [], 1000.0)
                                     for s in stores), return_exceptions=True)
        refused = [x for x in out if isinstance(x, StoreError)]
        assert len(refused) == 1, out
        won = numbers[out.index(next(x for x in out if not isinstance(x, BaseException)))]
        assert f"in use by a proxy set to {won} partition(s)" in str(refused[0])
        assert f"add ?partitions={won}" in str(refused[0])
        assert cli(own_redis.port, "get", f"{{{prefix}}}:layout").strip() == str(won)
    finally:
        for s in stores:
            await s.close()


async def test_a_running_proxy_holds_its_layout_and_refuses_once_it_is_taken(own_redis):
    """A proxy that runs keeps a live key (its flusher's claims refresh it): a proxy set to
    another number is refused while it lives, even with no data. If it expires (the proxy
    paused past LIVE_TTL) and the data is empty, a new number may take the layout; the old
    proxy then refuses at its next refresh, naming the new number."""
    old = from_url(own_redis.url, prefix="held")  # one partition, the default
    new = from_url(own_redis.url + "?partitions=4", prefix="held")
    try:
        assert await old.claim_due(1000.0, 30.0, 10) == []  # a flusher's poll: takes the layout
        assert 0 < int(cli(own_redis.port, "ttl", "{held}:layout:live")) <= LIVE_TTL
        with pytest.raises(StoreError, match=r"in use by a proxy set to 1 partition\(s\).*set to 4"):
            await new.record([_entry("g1", KEYS[1])], [], 1000.0)
        cli(own_redis.port, "del", "{held}:layout:live")
        await new.record([_entry("g1", KEYS[1])], [], 1000.0)
        old.live_every = 0  # (its next poll refreshes)
        with pytest.raises(StoreError, match=r"in use by a proxy set to 4 partition\(s\).*set to 1"):
            await old.claim_due(1001.0, 30.0, 10)
        with pytest.raises(StoreError, match="set to 4 partition"):
            await old.record([_entry("g2", KEYS[2])], [], 1001.0)
        assert [g.key for g in await new.groups()] == ["g1"]
    finally:
        await old.close()
        await new.close()
