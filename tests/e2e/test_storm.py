"""A cascading outage through the real CLI: 600 alerts in 60 groups on one routing key.

Alertmanager alone sends ~237 events and draws ~1,800 429s here; the proxy must send at
most two events per group (trigger, resolve), draw no 429 and never exceed the budget."""

from __future__ import annotations

import asyncio
import random
import time

from tests.conftest import KEY, wait_for, write_rules
from tests.support.net import free_port, wait_port
from tests.support.storm import am_body, outage, post_batches

RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
"""


async def start_proxy(tmp_path, fake_pd, proxy_process) -> str:
    """`alert-proxy serve` with RULES in front of the fake PagerDuty; its webhook URL."""
    port = free_port()
    rules = write_rules(tmp_path / "rules", RULES)
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--upstream", fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    return f"http://127.0.0.1:{port}/v1/alertmanager"


async def test_cascading_outage_two_events_per_group_no_429(tmp_path, fake_pd, proxy_process):
    url = await start_proxy(tmp_path, fake_pd, proxy_process)
    alerts = outage()
    assert len(alerts) == 600
    rng = random.Random(1)
    for wave in range(3):  # the outage spreads, and senders repeat what they already sent
        shuffled = alerts[: 200 * (wave + 1)]
        rng.shuffle(shuffled)
        assert {st for _, st in await post_batches(url, shuffled, "firing")} == {200}
        await asyncio.sleep(0.5)
    await wait_for(lambda: len(fake_pd.accepted()) >= 60, timeout=60)
    assert {st for _, st in await post_batches(url, alerts, "resolved")} == {200}
    await wait_for(lambda: len(fake_pd.accepted()) >= 120, timeout=90)
    await asyncio.sleep(2)
    seq = fake_pd.by_dedup()
    assert len(seq) == 60
    assert all(actions == ["trigger", "resolve"] for actions in seq.values()), seq
    assert fake_pd.count(429) == 0
    assert fake_pd.max_in_window(KEY) <= 120
    assert fake_pd.violations == []
    counts = sorted(r.body["payload"]["custom_details"]["num_firing"]
                    for r in fake_pd.accepted() if r.action == "trigger")
    assert sum(counts) >= 200  # the first wave of each group, at least, was in its page


async def test_outage_through_500s_and_dropped_connections(tmp_path, fake_pd, proxy_process):
    """20 % of requests answered 500, 10 % of connections dropped after PagerDuty accepted
    the event, the 120/min budget enforced: every group triggered and resolved, no resolve
    before its trigger, no 429."""
    fake_pd.fail_rate, fake_pd.drop_rate = 0.2, 0.1
    url = await start_proxy(tmp_path, fake_pd, proxy_process)
    alerts = outage()
    assert {st for _, st in await post_batches(url, alerts, "firing")} == {200}
    await wait_for(lambda: len(fake_pd.by_dedup()) >= 60, timeout=90)
    assert {st for _, st in await post_batches(url, alerts, "resolved")} == {200}

    def all_resolved() -> bool:
        seq = fake_pd.by_dedup()
        return len(seq) == 60 and all("resolve" in a for a in seq.values())

    await wait_for(all_resolved, timeout=150)
    await asyncio.sleep(3)
    for dk, actions in fake_pd.by_dedup().items():
        first_resolve = actions.index("resolve")
        assert "trigger" in actions[:first_resolve], (dk, actions)  # never resolve-first
        assert set(actions[first_resolve:]) == {"resolve"}, (dk, actions)  # no trigger after
    assert fake_pd.count(500) > 0  # the faults did happen
    assert fake_pd.count(429) == 0
    assert fake_pd.max_in_window(KEY) <= 120
    assert fake_pd.violations == []


async def test_critical_overtakes_2000_queued_info_triggers(make_proxy, fake_pd):
    rules = RULES.replace("group_by: [alertname, service]", "group_by: [alertname, instance]")
    client = await make_proxy(fake_pd.url, rules=rules)
    info = [{"labels": {"alertname": "Info", "instance": f"i{i}", "severity": "info"},
             "fingerprint": f"info-{i}"} for i in range(2000)]
    h = {"Content-Type": "application/json"}
    for i in range(0, 2000, 100):
        r = await client.post("/v1/alertmanager", data=am_body(info[i:i + 100], "firing"), headers=h)
        assert r.status == 200
    # 110 go at once (the window less its reserve for critical triggers); the rest wait
    await wait_for(lambda: len(client.proxy.store._items) > 1800, timeout=20)
    await asyncio.sleep(2.1)  # the observer refreshes gauges every 2 s
    metrics = await (await client.get("/metrics")).text()
    depth = [ln for ln in metrics.splitlines() if ln.startswith("alert_proxy_outbox_depth{")]
    assert depth and float(depth[0].split()[-1]) > 1000
    assert 'key="PD_ROUTING_KEY"' in depth[0]
    assert any(ln.startswith("alert_proxy_outbox_oldest_age_seconds{") for ln in metrics.splitlines())
    sent_before = len(fake_pd.accepted())
    crit = [{"labels": {"alertname": "DatabaseDown", "instance": "db1", "severity": "critical"},
             "fingerprint": "crit"}]
    t_alert = time.time()
    r = await client.post("/v1/alertmanager", data=am_body(crit, "firing"), headers=h)
    assert r.status == 200
    await wait_for(lambda: any(x.body["payload"]["severity"] == "critical" for x in fake_pd.accepted()),
                   timeout=10)
    got = next(x for x in fake_pd.accepted() if x.body["payload"]["severity"] == "critical")
    flush_at = t_alert + 1.0  # group_wait
    assert got.at - flush_at < 2.0, got.at - flush_at
    assert len(fake_pd.accepted()) - sent_before < 8  # only a few info got ahead
    assert fake_pd.count(429) == 0
