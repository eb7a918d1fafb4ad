"""A cascading outage through the real CLI: 600 alerts in 60 groups on one routing key.

Alertmanager alone sends ~237 events and draws ~1,800 429s here; the proxy must send at
most two events per group (trigger, resolve), draw no 429 and never exceed the budget."""

from __future__ import annotations

import asyncio
import random

from tests.conftest import KEY, free_port, wait_for, wait_port, write_rules
from tests.support.storm import outage, post_batches

RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
"""


async def test_cascading_outage_two_events_per_group_no_429(tmp_path, fake_pd, proxy_process):
    port = free_port()
    rules = write_rules(tmp_path / "rules", RULES)
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--upstream", fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    url = f"http://127.0.0.1:{port}/v1/alertmanager"
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
