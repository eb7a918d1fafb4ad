"""Window semantics through Proxy.accept/flush_due with a manual clock: no sleeping."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from proxy.app import Proxy, Settings
from proxy.clock import ManualClock
from proxy.ingest import alertmanager
from proxy.store.memory import MemoryStore
from tests.conftest import KEY, write_rules

RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
rules:
  - name: growth
    match: {alertname: Growing}
    on_growth: update
  - name: quick-resolve
    match: {alertname: Quick}
    resolve_wait: 0s
  - name: capped
    match: {alertname: Capped}
    max_alerts: 3
"""


@pytest.fixture
def proxy(tmp_path: Path) -> Proxy:
    rules = write_rules(tmp_path / "rules", RULES)
    p = Proxy(Settings(rules=[str(rules)], upstream="http://127.0.0.1:9", watch_interval=0),
              MemoryStore(), clock=ManualClock())
    return p


def alert(name: str, inst: str, status: str = "firing") -> dict[str, object]:
    return {"status": status, "labels": {"alertname": name, "instance": inst}, "annotations": {}}


async def send(p: Proxy, *alerts: dict[str, object]) -> None:
    await p.accept(alertmanager.parse({"alerts": list(alerts)}))


async def step(p: Proxy, seconds: float) -> list[tuple[str, dict[str, object]]]:
    """Advance the clock and flush; returns the (action, body) enqueued since last time."""
    clock = p.clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds)
    await p.flush_due()
    out = []
    for ev in await p.store.pending():
        out.append((ev.action, orjson.loads(ev.body)))
        await p.store.done(ev, clock.now())
    return out


async def test_group_wait_collects_then_one_trigger(proxy):
    await send(proxy, alert("Down", "a"), alert("Down", "b"))
    assert await step(proxy, 29) == []
    await send(proxy, alert("Down", "c"), alert("Down", "a"))  # a again: one alert
    [(action, body)] = await step(proxy, 1.5)
    assert action == "trigger"
    assert body["payload"]["custom_details"]["num_firing"] == 3
    assert body["payload"]["summary"].startswith("[FIRING:3] alertname=Down")


async def test_transient_alert_never_pages(proxy):
    await send(proxy, alert("Blip", "a"))
    await step(proxy, 10)
    await send(proxy, alert("Blip", "a", "resolved"))
    assert await step(proxy, 60) == []
    assert await proxy.store.groups() == []


async def test_late_joiner_recorded_but_no_second_page(proxy):
    await send(proxy, alert("Down", "a"))
    [(a, first)] = await step(proxy, 30)
    await send(proxy, alert("Down", "b"))
    assert await step(proxy, 600) == []
    [g] = await proxy.store.groups()
    assert len(g.alerts) == 2  # the status API shows it


async def test_resolve_once_when_all_resolved_after_group_interval(proxy):
    await send(proxy, alert("Down", "a"), alert("Down", "b"))
    [(_, trig)] = await step(proxy, 30)
    await send(proxy, alert("Down", "a", "resolved"))
    assert await step(proxy, 400) == []  # b still firing
    await send(proxy, alert("Down", "b", "resolved"))
    assert await step(proxy, 1) == []  # a group flushed at 430s waits group_interval
    events = await step(proxy, 300)
    assert events == [("resolve", {"routing_key": KEY, "event_action": "resolve",
                                   "dedup_key": trig["dedup_key"]})]
    assert await proxy.store.groups() == []


async def test_resolve_wait_zero_resolves_at_once(proxy):
    await send(proxy, alert("Quick", "a"))
    await step(proxy, 30)
    await send(proxy, alert("Quick", "a", "resolved"))
    [(action, _)] = await step(proxy, 0.1)
    assert action == "resolve"


async def test_repeat_interval_retriggers_a_firing_group(proxy):
    await send(proxy, alert("Down", "a"))
    [(_, first)] = await step(proxy, 30)
    assert await step(proxy, 3 * 3600) == []
    [(action, again)] = await step(proxy, 3600)
    assert action == "trigger" and again["dedup_key"] == first["dedup_key"]


async def test_on_growth_update_at_most_every_group_interval(proxy):
    await send(proxy, alert("Growing", "a"))
    await step(proxy, 30)
    await send(proxy, alert("Growing", "b"))
    assert await step(proxy, 60) == []  # within group_interval of the trigger
    [(action, body)] = await step(proxy, 250)
    assert action == "trigger" and body["payload"]["custom_details"]["num_firing"] == 2


async def test_dedup_key_is_stable_across_processes(tmp_path):
    keys = []
    for _ in range(2):
        rules = write_rules(tmp_path / "rules", RULES)
        p = Proxy(Settings(rules=[str(rules)], upstream="http://x", watch_interval=0),
                  MemoryStore(), clock=ManualClock())
        await send(p, alert("Down", "a"))
        [(_, body)] = await step(p, 30)
        keys.append(body["dedup_key"])
    assert keys[0] == keys[1] and len(keys[0]) == 64


async def test_max_alerts_caps_the_group_and_says_so(proxy):
    await send(proxy, *[alert("Capped", str(i)) for i in range(5)])
    [(_, body)] = await step(proxy, 30)
    details = body["payload"]["custom_details"]
    assert details["num_firing"] == 3 and details["truncated_alerts"] == 2


async def test_resolve_reaches_group_even_after_rules_drop_the_alert(proxy, tmp_path):
    await send(proxy, alert("Down", "a"))
    [(_, trig)] = await step(proxy, 30)
    dropping = "rules:\n  - name: drop-down\n    match: {alertname: Down}\n    drop: true\n"
    write_rules(tmp_path / "rules", RULES.replace("rules:\n", dropping, 1))
    assert proxy.reload() == []
    await send(proxy, alert("Down", "a", "resolved"))
    [(action, body)] = await step(proxy, 301)
    assert action == "resolve" and body["dedup_key"] == trig["dedup_key"]


async def test_trigger_fits_pagerduty_size_limit(proxy):
    big = [{"status": "firing", "labels": {"alertname": "Huge", "instance": str(i)},
            "annotations": {"description": "x" * 5000}} for i in range(400)]
    await send(proxy, *big)
    [(_, body)] = await step(proxy, 30)
    assert len(orjson.dumps(body)) <= 500_000
    assert body["payload"]["custom_details"]["num_firing"] == 400
    assert body["payload"]["custom_details"]["truncated_alerts"] > 0
