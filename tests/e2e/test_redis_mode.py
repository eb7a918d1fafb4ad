"""Redis mode through the real CLI and a real redis-server: replicas sharing it, Redis down.
(kill -9 mid-storm: test_durable.py, for every durable store.)"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.conftest import KEY, wait_for
from tests.support.net import free_port, wait_port
from tests.support.proxies import all_resolved, start, until_accepted
from tests.support.storm import fingerprints_in_triggers, outage, post_batches


async def test_two_replicas_share_windows_outbox_and_budget(tmp_path, fake_pd, proxy_process, own_redis):
    ports = free_port(), free_port()
    for i, port in enumerate(ports):
        start(proxy_process, tmp_path, own_redis.url, f"replica{i}", port, fake_pd.url)
    for port in ports:
        await asyncio.to_thread(wait_port, port)
    alerts = outage(kinds=("Down", "Latency"), services=10, instances=10)  # 20 groups
    urls = [f"http://127.0.0.1:{p}/v1/alertmanager" for p in ports]
    # two senders (an HA Alertmanager pair) send the same outage, one to each replica
    await asyncio.gather(*(until_accepted(u, alerts, "firing") for u in urls))
    await wait_for(lambda: len(fake_pd.accepted()) >= 20, timeout=60)
    await asyncio.sleep(3)
    await asyncio.gather(*(until_accepted(u, alerts, "resolved") for u in urls))
    await wait_for(lambda: all_resolved(fake_pd) and len(fake_pd.accepted()) >= 40, timeout=60)
    await asyncio.sleep(3)
    seq = fake_pd.by_dedup()
    assert len(seq) == 20
    assert all(actions == ["trigger", "resolve"] for actions in seq.values()), seq
    assert fake_pd.count(429) == 0 and fake_pd.max_in_window(KEY) <= 120
    assert fake_pd.violations == []
    assert fingerprints_in_triggers([r.body for r in fake_pd.accepted() if r.action == "trigger"]) \
        == {str(a["fingerprint"]) for a in alerts}


async def test_redis_down_answers_503_then_recovers(tmp_path, fake_pd, proxy_process, own_redis):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start(proxy_process, tmp_path, own_redis.url, "proxy", port, fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    alerts = outage(kinds=("Down",), services=5, instances=60)  # 300 alerts, 5 groups
    answers: list[tuple[float, list[str], int]] = []
    ready: list[tuple[float, int]] = []

    async def storm() -> None:
        async with aiohttp.ClientSession() as s:
            for i in range(0, len(alerts), 5):
                t = time.monotonic()
                for fps, st in await post_batches(base + "/v1/alertmanager", alerts[i:i + 5], "firing"):
                    answers.append((t, fps, st))
                for probe in ("/readyz", "/-/ready"):
                    async with s.get(base + probe) as r:
                        ready.append((time.monotonic(), r.status))
                await asyncio.sleep(0.25)

    task = asyncio.create_task(storm())
    await asyncio.sleep(2)
    down_at = time.monotonic()
    await asyncio.to_thread(own_redis.stop)
    await asyncio.sleep(10)
    await asyncio.to_thread(own_redis.start)
    up_at = time.monotonic()
    await task
    during = [st for t, _, st in answers if down_at + 0.1 < t < up_at - 0.1]
    assert during and set(during) == {503}, during  # never 2xx for what it could not store
    assert sum(st == 503 for t, st in ready if down_at + 0.1 < t < up_at - 0.1) >= 2
    assert any(st == 200 for t, _, st in answers if t > up_at + 1)  # recovered by itself
    accepted = {fp for _, fps, st in answers if st == 200 for fp in fps}

    def paged() -> set[str]:
        return fingerprints_in_triggers([r.body for r in fake_pd.accepted() if r.action == "trigger"])

    await wait_for(lambda: accepted <= paged(), timeout=60)
    assert fake_pd.violations == []
