"""Noise control through the real CLI: pages out fast under a storm within PagerDuty's
exact budget, flap damping, thresholds, stale groups, storm folding, cross-source
groups, and why each page was sent."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from tests.conftest import KEY, wait_for, write_rules
from tests.support.net import free_port, wait_port
from tests.support.storm import am_body, outage, post_batches

CASCADE_RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
"""


async def serve(tmp_path, fake_pd, proxy_process, rules: str, *extra: str) -> str:
    port = free_port()
    rules_dir = write_rules(tmp_path / "rules", rules)
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules_dir), "--upstream",
                  fake_pd.url, *extra)
    await asyncio.to_thread(wait_port, port)
    return f"http://127.0.0.1:{port}"


async def post(url: str, body: Any) -> int:
    async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
        return r.status


def am(name: str, status: str = "firing", **labels: str) -> dict[str, Any]:
    return {"version": "4", "alerts": [{"status": status, "labels": {"alertname": name, **labels}}]}


async def test_cascade_every_trigger_within_group_wait_plus_2s(tmp_path, fake_pd, proxy_process):
    """601 alerts in 61 groups on one key: the window has room for all 61 triggers, so
    each goes out within group_wait + 2 s of its group opening; no 429."""
    base = await serve(tmp_path, fake_pd, proxy_process, CASCADE_RULES)
    alerts = outage() + [{"labels": {"alertname": "ClusterDown", "service": "k8s"},
                          "fingerprint": "cluster-down"}]
    opened: dict[tuple[str, str], float] = {}
    for i in range(0, len(alerts), 64):
        chunk = alerts[i:i + 64]
        t = time.time()
        for a in chunk:
            lb = a["labels"]
            opened.setdefault((lb["alertname"], lb["service"]), t)  # type: ignore[index]
        assert {st for _, st in await post_batches(base + "/v1/alertmanager", chunk, "firing")} == {200}
    await wait_for(lambda: len(fake_pd.accepted()) >= 61, timeout=30)
    late = []
    for r in fake_pd.accepted():
        g = r.body["payload"]["custom_details"]["group"]
        late.append(r.at - opened[(g["alertname"], g["service"])])
    assert len(late) == 61 and max(late) <= 1.0 + 2.0, sorted(late)[-5:]
    assert fake_pd.count(429) == 0 and fake_pd.violations == []


async def test_a_storm_larger_than_the_budget_never_exceeds_120_in_60s(tmp_path, fake_pd, proxy_process):
    """130 groups at once on one key: 110 triggers go at once (the window less the reserve
    for critical triggers), the rest when the window has room again; PagerDuty never sees
    more than 120 in any 60 s, and never answers 429."""
    base = await serve(tmp_path, fake_pd, proxy_process,
                       CASCADE_RULES.replace("[alertname, service]", "[alertname, instance]"))
    alerts = [{"labels": {"alertname": "Down", "instance": f"i{i}"}, "fingerprint": f"f{i}"}
              for i in range(130)]
    assert {st for _, st in await post_batches(base + "/v1/alertmanager", alerts, "firing")} == {200}
    await wait_for(lambda: len(fake_pd.accepted()) >= 110, timeout=15)
    first = min(r.at for r in fake_pd.accepted())
    await asyncio.sleep(3)
    assert len(fake_pd.accepted()) == 110
    await wait_for(lambda: len(fake_pd.accepted()) == 130, timeout=75)
    assert min(r.at for r in fake_pd.accepted()[110:]) >= first + 60
    assert fake_pd.max_in_window(KEY) <= 120 and fake_pd.count(429) == 0
    assert fake_pd.violations == []


NOISE_RULES = CASCADE_RULES + """
rules:
  - name: flappy
    match: {alertname: Flappy}
    group_wait: 3s
    group_interval: 1s
    flap: {changes: 4, within: 10s, hold: 4s}
  - name: three
    match: {alertname: Disk}
    min_alerts: 3
  - name: cron
    match: {alertname: BackupFailed}
    stale_after: 3s
  - name: checkout
    match: ['service=~"checkout.*"']
    labels: {service: checkout}
    group_by: [service]
  - name: grows
    match: {alertname: Grows}
    on_growth: update
"""


async def test_flapping_alert_pages_once_and_resolves_once(tmp_path, fake_pd, proxy_process):
    base = await serve(tmp_path, fake_pd, proxy_process, NOISE_RULES)
    for i in range(16):  # fires and resolves every half second for 8 s
        assert await post(base + "/v1/alertmanager",
                          am("Flappy", "firing" if i % 2 == 0 else "resolved", instance="a")) == 200
        await asyncio.sleep(0.5)
    assert await post(base + "/v1/alertmanager", am("Flappy", "resolved", instance="a")) == 200
    await wait_for(lambda: any(r.action == "resolve" for r in fake_pd.accepted()), timeout=20)
    await asyncio.sleep(2)
    assert [r.action for r in fake_pd.accepted()] == ["trigger", "resolve"]
    assert fake_pd.accepted()[0].body["payload"]["custom_details"]["flapping"] is True


FLAP_SCENARIO = CASCADE_RULES.replace("[alertname, service]", "[alertname, instance]").replace(
    "  group_wait: 1s\n  group_interval: 2s\n", "  group_wait: 300ms\n  group_interval: 400ms\n") + """
rules:
  - name: every-alert
    match: {alertname: Probe}
    flap: {changes: 4, within: 60s, hold: 3s}
"""


async def test_flapping_across_a_groups_lifetimes_one_trigger_one_resolve_per_alert(
        tmp_path, fake_pd, proxy_process):
    """The outside scenario (issue 30) with its timings scaled by 1/10: 20 alerts fire and
    resolve 5 times each over ~14 s (gaps of 0.5-2.5 s; 5-25 s there), flap: hold 3 s
    (30 s there). Each resolve outlasted resolve_wait (0.4 s), the group closed, and the
    next firing opened a fresh one: 200 events, what Alertmanager alone sends. Now a page
    resolves only once its alerts have been stable for `hold`: one trigger and one resolve
    per alert."""
    import random

    base = await serve(tmp_path, fake_pd, proxy_process, FLAP_SCENARIO)
    url = base + "/v1/alertmanager"
    rng = random.Random(30)
    plan = []  # (time, instance, status)
    for i in range(20):
        t = rng.uniform(0, 1.0)
        for cycle in range(5):
            plan.append((t, f"probe{i}", "firing"))
            t += rng.uniform(0.5, 2.5)
            plan.append((t, f"probe{i}", "resolved"))
            t += rng.uniform(0.5, 2.5) if cycle < 4 else 0
    plan.sort()
    t0 = time.monotonic()
    for at, inst, status in plan:
        await asyncio.sleep(max(0.0, t0 + at - time.monotonic()))
        assert await post(url, am("Probe", status, instance=inst)) == 200
    await wait_for(lambda: sum(1 for r in fake_pd.accepted() if r.action == "resolve") >= 20, timeout=30)
    await asyncio.sleep(4)
    events = fake_pd.accepted()
    assert 36 <= len(events) <= 44, len(events)
    per_alert = {}
    for r in events:
        per_alert.setdefault(r.dedup_key, []).append(r.action)
    assert len(per_alert) == 20
    assert sum(1 for actions in per_alert.values() if actions == ["trigger", "resolve"]) >= 18, per_alert


async def test_min_alerts_and_stale(tmp_path, fake_pd, proxy_process):
    base = await serve(tmp_path, fake_pd, proxy_process, NOISE_RULES)
    url = base + "/v1/alertmanager"
    assert await post(url, am("Disk", instance="n1")) == 200
    assert await post(url, am("Disk", instance="n2")) == 200
    assert await post(url, am("BackupFailed", job="nightly")) == 200
    await asyncio.sleep(2.5)
    assert [r.body["payload"]["custom_details"]["rule"] for r in fake_pd.accepted()] == ["cron"]
    assert await post(url, am("Disk", instance="n3")) == 200
    await wait_for(lambda: len(fake_pd.accepted()) >= 3, timeout=10)
    by_rule = {(r.body.get("payload") or {}).get("custom_details", {}).get("rule", "-"): r.action
               for r in fake_pd.accepted()}
    assert by_rule.get("three") == "trigger"
    resolve = [r for r in fake_pd.accepted() if r.action == "resolve"]
    assert resolve and resolve[0].dedup_key == fake_pd.accepted()[0].dedup_key  # stale, resolved
    async with aiohttp.ClientSession() as s, s.get(base + "/api/v1/groups") as r:
        groups = (await r.json())["groups"]
    assert [g["rule"] for g in groups] == ["three"]


async def test_storm_folds_then_unfolds(tmp_path, fake_pd, proxy_process):
    rules = CASCADE_RULES.replace("  repeat_interval: 1h", "  repeat_interval: 1h\n  storm: {groups: 5, within: 3s}")
    base = await serve(tmp_path, fake_pd, proxy_process, rules)
    url = base + "/v1/alertmanager"
    alerts = [{"labels": {"alertname": "Down", "service": f"s{i}"}, "fingerprint": f"s{i}"}
              for i in range(20)]
    assert {st for _, st in await post_batches(url, alerts, "firing")} == {200}
    await wait_for(lambda: any(r.body["payload"]["custom_details"].get("storm")
                               for r in fake_pd.accepted()), timeout=10)
    own = [r for r in fake_pd.accepted() if not r.body["payload"]["custom_details"].get("storm")]
    assert len(own) == 5
    async with aiohttp.ClientSession() as s, s.get(base + "/api/v1/groups") as r:
        groups = (await r.json())["groups"]
    assert sum(1 for g in groups if g["state"].get("held") == "folded") == 15
    assert sum(len(g["alerts"]) for g in groups if g["rule"] != "(storm)") == 20  # all visible
    # half resolve during the storm; calm comes 3 s after the last fold
    assert {st for _, st in await post_batches(url, alerts[5:12], "resolved")} == {200}
    await wait_for(lambda: sum(1 for r in fake_pd.accepted() if r.action == "resolve") >= 1, timeout=15)
    await wait_for(lambda: len(fake_pd.accepted()) >= 5 + 1 + 1 + 8, timeout=15)
    after = [r for r in fake_pd.accepted() if r.body.get("payload", {}).get("custom_details", {})
             .get("after_storm")]
    assert len(after) == 8  # the folded groups still firing page on their own
    storm_dk = next(r.dedup_key for r in fake_pd.accepted() if r.action == "trigger"
                    and r.body["payload"]["custom_details"].get("storm"))
    assert [r.dedup_key for r in fake_pd.accepted() if r.action == "resolve"] == [storm_dk]
    assert fake_pd.violations == []


async def test_three_sources_one_service_one_incident(tmp_path, fake_pd, proxy_process):
    base = await serve(tmp_path, fake_pd, proxy_process, NOISE_RULES)
    assert await post(base + "/v1/alertmanager", am("HighLatency", service="checkout-api")) == 200
    assert await post(base + "/v1/datadog", {"title": "[Triggered] Checkout errors",
                                            "tags": "service:checkout-web"}) == 200
    assert await post(base + "/v2/enqueue", {
        "routing_key": KEY, "event_action": "trigger", "dedup_key": "lb",
        "payload": {"summary": "5xx", "source": "lb", "severity": "error",
                    "custom_details": {"service": "checkout-lb"}}}) == 202
    await wait_for(lambda: len(fake_pd.accepted()) >= 1, timeout=10)
    await asyncio.sleep(1.5)
    [page] = fake_pd.accepted()
    d = page.body["payload"]["custom_details"]
    assert d["num_firing"] == 3 and d["group"] == {"service": "checkout"}
    assert sorted(a["labels"].get("alertname", "lb") for a in d["alerts"]) == \
        ["Checkout errors", "HighLatency", "lb"]


async def test_why_this_page_and_the_senders_own_client(tmp_path, fake_pd, proxy_process):
    base = await serve(tmp_path, fake_pd, proxy_process, NOISE_RULES)
    url = base + "/v1/alertmanager"
    h = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(headers=h) as s:
        await s.post(url, data=am_body([{"labels": {"alertname": "Grows", "instance": "a"}}], "firing"))
        await wait_for(lambda: len(fake_pd.accepted()) == 1, timeout=10)
        await s.post(url, data=am_body([{"labels": {"alertname": "Grows", "instance": "b"}}], "firing"))
        await wait_for(lambda: len(fake_pd.accepted()) == 2, timeout=10)
        first, grown = (r.body["payload"]["custom_details"] for r in fake_pd.accepted())
        assert first["why"] == "first" and grown["why"] == "grown"
        assert grown["added"] == [{"alertname": "Grows", "instance": "b"}] and grown["num_added"] == 1
        # a Grafana-style Events v2 sender keeps its own client and link
        async with s.post(base + "/v2/enqueue", json={
                "routing_key": KEY, "event_action": "trigger", "dedup_key": "grafana-1",
                "client": "Grafana", "client_url": "https://grafana.example.com/alerting/1",
                "payload": {"summary": "CPU high", "source": "grafana", "severity": "warning"}}) as r:
            assert r.status == 202
    await wait_for(lambda: len(fake_pd.accepted()) == 3, timeout=10)
    ev = fake_pd.accepted()[2].body
    assert (ev["client"], ev["client_url"]) == ("Grafana", "https://grafana.example.com/alerting/1")
