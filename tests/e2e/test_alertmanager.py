"""The real Alertmanager (Debian's prometheus-alertmanager) in front of the real CLI proxy.

Alertmanager posts to the proxy through a webhook receiver and through pagerduty_configs
whose url: is the proxy; our fake PagerDuty checks every event that comes out."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import KEY, KEY2, wait_for, write_rules
from tests.support.alertmanager import alertmanager, wait_http
from tests.support.net import free_port

pytestmark = pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None,
                                reason="needs prometheus-alertmanager (tests/run.sh installs it)")

RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
rules:
  - name: disks
    match: ['alertname="DiskFull"']
    severity: critical
    links:
      - {href: "https://runbooks.example.com/{{ labels.alertname }}", text: Runbook}
"""


def am_config(proxy_port: int) -> str:
    return f"""
route:
  receiver: both
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
receivers:
- name: both
  webhook_configs:
  - url: http://127.0.0.1:{proxy_port}/v1/alertmanager
    send_resolved: true
  pagerduty_configs:
  - routing_key: {KEY2}
    url: http://127.0.0.1:{proxy_port}/v2/enqueue
    send_resolved: true
"""


async def test_alertmanager_webhook_and_pagerduty_receivers(tmp_path: Path, fake_pd, proxy_process):
    proxy_port = free_port()
    rules = write_rules(tmp_path / "rules", RULES)
    proxy_process("--listen", f"127.0.0.1:{proxy_port}", "--rules", str(rules),
                  "--upstream", fake_pd.url)
    await wait_http(f"http://127.0.0.1:{proxy_port}/readyz")
    async with alertmanager(tmp_path, am_config(proxy_port)) as am:
        now = datetime.now(UTC)
        alerts = [{"labels": {"alertname": name, "instance": f"db{i}:9100", "severity": "warning"},
                   "annotations": {"summary": f"{name} on db{i}"},
                   "startsAt": now.isoformat()}
                  for name in ("DiskFull", "HighLoad") for i in range(3)]
        api = f"{am}/api/v2/alerts"
        async with aiohttp.ClientSession() as s:
            async with s.post(api, json=alerts) as r:
                assert r.status == 200, await r.text()
            # webhook: 2 groups -> 2 triggers (KEY); pagerduty_configs: 2 AM groups -> 2 (KEY2)
            await wait_for(lambda: len(fake_pd.accepted()) >= 4, timeout=30)
            await asyncio.sleep(1.5)
            end = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
            async with s.post(api, json=[{**a, "endsAt": end} for a in alerts]) as r:
                assert r.status == 200
            await wait_for(lambda: len(fake_pd.accepted()) >= 8, timeout=40)
        await asyncio.sleep(3)  # nothing more may come
    assert fake_pd.violations == []
    assert fake_pd.count(429) == 0
    seq = fake_pd.by_dedup()
    assert len(seq) == 4, seq
    assert all(actions == ["trigger", "resolve"] for actions in seq.values()), seq
    triggers = [r.body for r in fake_pd.accepted() if r.action == "trigger"]
    by_key = {KEY: [t for t in triggers if t["routing_key"] == KEY],
              KEY2: [t for t in triggers if t["routing_key"] == KEY2]}
    assert len(by_key[KEY]) == 2 and len(by_key[KEY2]) == 2
    disk = next(t for t in by_key[KEY] if "DiskFull" in t["payload"]["summary"])
    assert disk["payload"]["summary"].startswith("[FIRING:3] DiskFull")  # Alertmanager's subject
    assert disk["payload"]["severity"] == "critical"
    assert disk["payload"]["custom_details"]["num_firing"] == 3
    assert {"href": "https://runbooks.example.com/DiskFull", "text": "Runbook"} in disk["links"]
    load = next(t for t in by_key[KEY] if "HighLoad" in t["payload"]["summary"])
    assert load["payload"]["severity"] == "warning"
    # Alertmanager's own Events v2 triggers keep their content, under the proxy's dedup_key
    for t in by_key[KEY2]:
        assert t["payload"]["summary"].startswith("[FIRING:3]")
        assert t["payload"]["custom_details"]["num_firing"] == "3"
