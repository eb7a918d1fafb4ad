"""What PagerDuty refuses, through the real CLI and the fake PagerDuty.

- An event PagerDuty refuses (400) goes to the dead letters once and never holds up its
  routing key: on SQLite the move failed on a reused sequence number, and the refused
  event was sent again and again (254 refusals from 30 alerts) while real pages waited.
- What PagerDuty would refuse is refused at the door, or made valid: a start time that is
  not ISO 8601, a blank `source` label, a blank summary, a change event's empty link."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter

import aiohttp
import pytest

from tests.conftest import KEY, ROOT, wait_for, write_rules
from tests.support.net import free_port, wait_port

RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname, instance]
  group_wait: 500ms
  group_interval: 5s
  repeat_interval: 1h
"""


def _am(*alerts: dict[str, object]) -> dict[str, object]:
    return {"version": "4", "status": "firing", "alerts": [
        {"status": "firing", "startsAt": "2026-12-02T10:00:00Z", **a} for a in alerts]}


async def _post(url: str, body: object) -> int:
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        await r.read()
        return r.status


def _serve(proxy_process, tmp_path, fake_pd, store: str, name: str = "proxy", port: int | None = None):
    port = port or free_port()
    proc = proxy_process("--listen", f"127.0.0.1:{port}", "--rules",
                         str(write_rules(tmp_path / "rules", RULES)), "--store", store,
                         "--upstream", fake_pd.url, name=name)
    return proc, port


@pytest.mark.parametrize("kind", ["sqlite", "redis", "memory"])
async def test_refused_events_are_dead_lettered_once_and_real_pages_still_go(
        tmp_path, fake_pd, proxy_process, own_redis, kind):
    store = {"sqlite": f"sqlite://{tmp_path}/state.db", "redis": own_redis.url, "memory": "memory://"}[kind]
    fake_pd.refuse = lambda body: "Refused" in str(body.get("payload", {}).get("summary", ""))
    proc, port = _serve(proxy_process, tmp_path, fake_pd, store, "first")
    await asyncio.to_thread(wait_port, port)
    url = f"http://127.0.0.1:{port}/v1/alertmanager"
    refused = [{"labels": {"alertname": "Refused", "instance": f"i{i}", "severity": "critical"},
                "annotations": {"summary": f"Refused {i}"}} for i in range(30)]
    assert await _post(url, _am(*refused[:15])) == 200
    await wait_for(lambda: fake_pd.count(400) >= 15, timeout=20)
    if kind != "memory":  # numbers go on after a restart
        proc.stop()
        proc, port = _serve(proxy_process, tmp_path, fake_pd, store, "second", port)
        await asyncio.to_thread(wait_port, port)
    assert await _post(url, _am(*refused[15:])) == 200
    t0 = time.time()
    good = [{"labels": {"alertname": "DatabaseDown", "instance": f"db{i}", "severity": "critical"},
             "annotations": {"summary": f"database {i} is down"}} for i in range(3)]
    assert await _post(url, _am(*good)) == 200
    await wait_for(lambda: sum(1 for r in fake_pd.accepted() if r.action == "trigger") >= 3, timeout=20)
    assert max(r.at for r in fake_pd.accepted()) - t0 < 0.5 + 5  # group_wait + 5 s
    await wait_for(lambda: fake_pd.count(400) >= 30, timeout=20)
    await asyncio.sleep(1.5)  # nothing refused is sent again
    refusals = Counter(r.dedup_key for r in fake_pd.received if r.status == 400)
    assert len(refusals) == 30 and set(refusals.values()) == {1}, refusals
    base = f"http://127.0.0.1:{port}"

    async def dead() -> list[dict[str, object]]:
        async with aiohttp.ClientSession() as s, s.get(base + "/api/v1/outbox") as r:
            return (await r.json())["dead"]

    letters = await dead()
    assert len(letters) == 30 and len({d["seq"] for d in letters}) == 30
    # `deadletter retry` sends each once more; refused again, each is a dead letter again
    r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "proxy", "deadletter", "retry",
                                                 "--url", base], cwd=ROOT, capture_output=True,
                                text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    await wait_for(lambda: fake_pd.count(400) >= 60, timeout=20)
    await asyncio.sleep(1.5)
    refusals = Counter(r.dedup_key for r in fake_pd.received if r.status == 400)
    assert set(refusals.values()) == {2}, refusals
    letters = await dead()
    assert len(letters) == 30 and len({d["seq"] for d in letters}) == 30
    assert fake_pd.violations == []


async def test_what_pagerduty_would_refuse_is_made_valid(tmp_path, fake_pd, proxy_process):
    _, port = _serve(proxy_process, tmp_path, fake_pd, "memory://")
    await asyncio.to_thread(wait_port, port)
    base = f"http://127.0.0.1:{port}"
    assert await _post(base + "/v1/alertmanager", _am(
        {"labels": {"alertname": "BadTime", "instance": "a"}, "startsAt": "yesterday"},
        {"labels": {"alertname": "BlankSource", "instance": "b", "source": "   "}},
        {"labels": {"alertname": "BlankSummary", "instance": "c"}, "annotations": {"summary": "   "}},
        {"labels": {"alertname": " ", "instance": " "}, "annotations": {"summary": "\t"}})) == 200
    change = {"routing_key": KEY, "payload": {"summary": "deployed v2", "source": "ci"},
              "links": [{"href": ""}, {"href": "https://ci.example.com/42", "text": "build"}]}
    assert await _post(base + "/v2/change/enqueue", change) == 202
    await wait_for(lambda: len(fake_pd.accepted()) >= 4 and len(fake_pd.accepted("/v2/change/enqueue")) == 1,
                   timeout=10)
    assert fake_pd.violations == [] and fake_pd.count(400) == 0
    pages = {r.body["payload"]["custom_details"]["group"].get("alertname", "").strip() or "-":
             r.body["payload"] for r in fake_pd.accepted()}
    assert "timestamp" not in pages["BadTime"]
    assert pages["BlankSource"]["source"] == "b"  # the next candidate: its instance
    assert pages["BlankSummary"]["summary"] == "[FIRING:1] BlankSummary c"  # Alertmanager's subject
    assert pages["-"]["summary"].strip() and pages["-"]["source"].strip()
    [sent] = fake_pd.accepted("/v2/change/enqueue")
    assert sent.body["links"] == [{"href": "https://ci.example.com/42", "text": "build"}]
    async with aiohttp.ClientSession() as s, s.get(base + "/metrics") as r:
        text = await r.text()
    assert 'alert_proxy_alert_fields_dropped_total{field="starts_at"} 1.0' in text
