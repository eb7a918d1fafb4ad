"""Nothing accepted is lost, through the real CLI: kill -9 mid-storm on the durable stores,
a restart of memory:// between a trigger and its resolve, a Sentinel failover."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from tests.conftest import KEY, wait_for
from tests.support.net import free_port, wait_port
from tests.support.proxies import all_resolved, paged, start, until_accepted
from tests.support.redis_server import RedisSentinel
from tests.support.storm import outage


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_kill_9_mid_storm_loses_nothing(tmp_path, fake_pd, proxy_process, own_redis, kind):
    store = f"sqlite://{tmp_path}/state.db" if kind == "sqlite" else own_redis.url
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/alertmanager"
    proc = start(proxy_process, tmp_path, store, "first", port, fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    alerts = outage(kinds=("Down", "Latency"), services=10, instances=10)
    first, rest = alerts[:120], alerts[120:]
    accepted = await until_accepted(url, first, "firing")
    await asyncio.sleep(1.2)  # some groups flush, some sends are in flight
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait()
    restarted = start(proxy_process, tmp_path, store, "second", port, fake_pd.url)
    accepted |= await until_accepted(url, rest, "firing")
    assert restarted.proc is not None and restarted.proc.poll() is None
    want = {str(a["fingerprint"]) for a in alerts}
    assert accepted == want
    await wait_for(lambda: paged(fake_pd) == want, timeout=60)
    await until_accepted(url, alerts, "resolved")
    await wait_for(lambda: all_resolved(fake_pd), timeout=60)
    seq = fake_pd.by_dedup()
    assert len(seq) == 20
    for actions in seq.values():
        assert actions[0] == "trigger" and actions[-1] == "resolve" and actions.count("resolve") == 1
    assert fake_pd.violations == [] and fake_pd.count(429) == 0


AM_FIRING = {"version": "4", "alerts": [{"status": "firing", "labels": {
    "alertname": "DiskFull", "service": "db", "instance": "db1"}}]}
DD_FIRING = {"title": "[Triggered] Checkout errors", "transition": "Triggered", "alert_id": "42",
             "tags": "service:checkout", "alert_cycle_key": "cycle-7"}
EV_TRIGGER = {"routing_key": KEY, "event_action": "trigger", "dedup_key": "backup-db1",
              "payload": {"summary": "backup failed", "source": "db1", "severity": "error"}}


def _resolve_of(kind: str) -> tuple[str, dict[str, object]]:
    if kind == "alertmanager":
        body = {"version": "4", "alerts": [{**AM_FIRING["alerts"][0], "status": "resolved"}]}  # type: ignore[index]
        return "/v1/alertmanager", body
    if kind == "datadog":
        return "/v1/datadog", {**DD_FIRING, "title": "[Recovered] Checkout errors",
                               "transition": "Recovered"}
    return "/v2/enqueue", {"routing_key": KEY, "event_action": "resolve", "dedup_key": "backup-db1"}


@pytest.mark.parametrize("kind", ["alertmanager", "datadog", "events_v2"])
async def test_memory_restart_between_trigger_and_resolve(tmp_path, fake_pd, proxy_process, kind):
    """memory:// forgets its groups on restart; the resolve still reaches PagerDuty under
    the dedup_key of the trigger (the group's identity is recomputed from the rules)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    path, firing = {"alertmanager": ("/v1/alertmanager", AM_FIRING),
                    "datadog": ("/v1/datadog", DD_FIRING), "events_v2": ("/v2/enqueue", EV_TRIGGER)}[kind]
    p = start(proxy_process, tmp_path, "memory://", "first", port, fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    async with aiohttp.ClientSession() as s:
        async with s.post(base + path, json=firing) as r:
            assert r.status in (200, 202)
        await wait_for(lambda: len(fake_pd.accepted()) == 1)
        trigger = fake_pd.accepted()[0].body
        p.stop()
        start(proxy_process, tmp_path, "memory://", "second", port, fake_pd.url)
        await asyncio.to_thread(wait_port, port)
        path, resolve = _resolve_of(kind)
        async with s.post(base + path, json=resolve) as r:
            assert r.status in (200, 202)
            answered = await r.json()
    await wait_for(lambda: any(x.action == "resolve" for x in fake_pd.accepted()))
    await asyncio.sleep(0.5)
    resolves = [x.body for x in fake_pd.accepted() if x.action == "resolve"]
    assert {"routing_key": KEY, "event_action": "resolve", "dedup_key": trigger["dedup_key"]} in resolves
    if kind == "events_v2":
        assert answered["dedup_key"] == "backup-db1"  # the drop-in answers with the sender's key
    assert fake_pd.violations == []


async def test_sentinel_failover_mid_storm(tmp_path, fake_pd, proxy_process):
    """The master is killed mid-storm; Sentinel promotes a replica and the proxy follows.
    With wait_replicas=1 nothing answered 2xx is lost; senders see 503s meanwhile."""
    sentinel = RedisSentinel(tmp_path / "sentinel")
    sentinel.start()
    try:
        port = free_port()
        url = f"http://127.0.0.1:{port}/v1/alertmanager"
        start(proxy_process, tmp_path, sentinel.url + "?wait_replicas=1", "proxy", port, fake_pd.url)
        await asyncio.to_thread(wait_port, port)
        alerts = outage(kinds=("Down", "Latency", "Errors"), services=10, instances=20)  # 600
        answers: list[int] = []
        before = sentinel.master_port()
        storm = asyncio.create_task(until_accepted(url, alerts, "firing", answers))
        await asyncio.sleep(1.0)
        t_kill = time.monotonic()
        sentinel.master.kill()
        accepted = await storm
        for _ in range(100):
            if sentinel.master_port() != before:
                break
            await asyncio.sleep(0.1)
        after = sentinel.master_port()
        want = {str(a["fingerprint"]) for a in alerts}
        await wait_for(lambda: paged(fake_pd) >= accepted, timeout=90)
        delivered = paged(fake_pd) & accepted
        refused = sum(1 for st in answers if st != 200)
        figures = (f"accepted {len(accepted)}, delivered {len(delivered)}, refused during failover "
                   f"{refused} of {len(answers)} requests, failover took "
                   f"{time.monotonic() - t_kill:.1f} s at most")
        print(figures)
        assert after != before, figures
        assert accepted == want and delivered == accepted, figures
        assert refused > 0 and set(answers) <= {200, 503, 0}, figures  # only 503s (or refusals), then 2xx
        assert fake_pd.violations == [] and fake_pd.count(429) == 0
    finally:
        sentinel.stop()
