"""Noise control through the pipeline with a manual clock: flap damping, thresholds,
stale groups, storm folding, cross-source groups and why each page was sent."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.clock import ManualClock
from proxy.ingest import alertmanager, datadog, events_v2
from proxy.metrics import Metrics
from proxy.model import SEEN_STEP
from proxy.pipeline import Pipeline
from proxy.rules import RuleSet, load_rules
from proxy.store.memory import MemoryStore
from proxy.storm import storm_key
from tests.conftest import KEY, write_rules
from tests.support.pipeline import step

BASE = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname]
  group_wait: 30s
  group_interval: 1m
  repeat_interval: 4h
"""


def make(tmp_path: Path, extra: str, group_by: str = "[alertname]") -> Pipeline:
    rules = write_rules(tmp_path / "rules", BASE.replace("[alertname]", group_by) + extra)
    return Pipeline(RuleSet(load_rules([str(rules)])), MemoryStore(), ManualClock(), Metrics())


async def send(p: Pipeline, *alerts: dict[str, object]) -> None:
    await p.accept(alertmanager.parse({"alerts": list(alerts)}))


def am(name: str, inst: str = "a", status: str = "firing", **labels: str) -> dict[str, object]:
    return {"status": status, "labels": {"alertname": name, "instance": inst, **labels}}


async def run(p: Pipeline, seconds: float, every: float = 1.0) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    for _ in range(int(seconds / every)):
        out += await step(p, every)
    return out


def details(ev: tuple[str, dict]) -> dict:
    return ev[1]["payload"]["custom_details"]


FLAP = """
rules:
  - name: flappy
    match: {alertname: Flappy}
    group_interval: 10s
    flap: {changes: 4, within: 5m, hold: 5m}
"""


async def test_flapping_alert_for_ten_minutes_pages_once_and_resolves_once(tmp_path):
    p = make(tmp_path, FLAP)
    events = []
    for i in range(120):  # fires and resolves every 5 s for 10 minutes
        await send(p, am("Flappy", status="firing" if i % 2 == 0 else "resolved"))
        events += await run(p, 5)
    await send(p, am("Flappy", status="resolved"))
    events += await run(p, 900, every=10)  # then stable
    assert [a for a, _ in events] == ["trigger", "resolve"]
    assert details(events[0])["flapping"] is True and details(events[0])["why"] == "first"


async def test_without_flap_damping_the_same_alert_churns(tmp_path):
    p = make(tmp_path, FLAP.replace("    flap: {changes: 4, within: 5m, hold: 5m}\n", ""))
    events = []
    for i in range(20):  # a page and a resolve for every cycle
        await send(p, am("Flappy", status="firing" if i % 2 == 0 else "resolved"))
        events += await run(p, 40, every=5)
    assert [a for a, _ in events] == ["trigger", "resolve"] * 10


async def test_a_flapping_alert_that_was_resolved_at_first_flush_still_pages(tmp_path):
    p = make(tmp_path, FLAP)
    for i in range(5):  # flaps before the first flush, and is resolved at it
        await send(p, am("Flappy", status="firing" if i % 2 == 0 else "resolved"))
        await step(p, 2)
    await send(p, am("Flappy", status="resolved"))
    [(action, body)] = await step(p, 25)
    assert action == "trigger" and body["payload"]["custom_details"]["flapping"] is True
    assert [a for a, _ in await run(p, 400, every=10)] == ["resolve"]


THRESHOLDS = """
rules:
  - name: three
    match: {alertname: Disk}
    min_alerts: 3
  - name: slow
    match: {alertname: Slow}
    for: 5m
  - name: either
    match: {alertname: Either}
    min_alerts: 3
    for: 10m
"""


async def test_min_alerts_waits_for_the_third(tmp_path):
    p = make(tmp_path, THRESHOLDS)
    await send(p, am("Disk", "a"), am("Disk", "b"))
    assert await run(p, 600, every=30) == []
    [g] = await p.store.groups()
    assert g.state.held == "threshold"
    await send(p, am("Disk", "c"))
    [(action, body)] = await run(p, 120, every=10)  # within group_interval of the 3rd
    assert action == "trigger" and body["payload"]["custom_details"]["num_firing"] == 3


async def test_for_waits_then_pages(tmp_path):
    p = make(tmp_path, THRESHOLDS)
    await send(p, am("Slow"))
    assert await run(p, 290, every=10) == []
    [(action, _)] = await run(p, 20, every=10)
    assert action == "trigger"


async def test_a_threshold_group_that_resolves_never_pages(tmp_path):
    p = make(tmp_path, THRESHOLDS)
    await send(p, am("Slow"))
    await run(p, 60, every=10)
    await send(p, am("Slow", status="resolved"))
    assert await run(p, 600, every=30) == [] and await p.store.groups() == []


async def test_either_threshold_is_enough(tmp_path):
    p = make(tmp_path, THRESHOLDS)
    await send(p, am("Either", "a"))
    events = await run(p, 660, every=30)
    assert [a for a, _ in events] == ["trigger"]  # for 10m, with one alert


STALE = """
rules:
  - name: cron
    match: {alertname: BackupFailed}
    stale_after: 1h
"""


async def test_stale_group_is_resolved_for_a_sender_that_never_resolves(tmp_path):
    p = make(tmp_path, STALE)
    await send(p, am("BackupFailed"))
    [(action, trig)] = await step(p, 30)
    await step(p, 1800)
    await send(p, am("BackupFailed"))  # refreshed at 30 min
    assert await step(p, 3000) == []
    [(action, body)] = await step(p, 700)  # an hour after the refresh
    assert action == "resolve" and body["dedup_key"] == trig["dedup_key"]
    assert await p.store.groups() == []


async def test_stale_after_counts_from_the_last_refresh_stored(tmp_path):
    """last_seen moves in steps of SEEN_STEP: a refresh less than that after the stored one
    is not written, and stale_after counts from the stored one (at most SEEN_STEP before the
    last refresh received); a refresh after the step moves it."""
    p = make(tmp_path, STALE.replace("1h", "1m"))
    await send(p, am("BackupFailed"))
    [(action, trig)] = await step(p, 30)
    await send(p, am("BackupFailed"))  # stored as last_seen (30 s)
    await step(p, SEEN_STEP * 0.6)
    await send(p, am("BackupFailed"))  # within the step: not stored
    assert await step(p, 60 - SEEN_STEP * 0.6 - 0.1) == []  # (the group is due: group_interval)
    [(action, body)] = await step(p, 0.2)  # stale_after after the refresh stored
    assert action == "resolve" and body["dedup_key"] == trig["dedup_key"]

    await send(p, am("BackupFailed"))  # opens the group again
    [(action, trig)] = await step(p, 30)
    await step(p, SEEN_STEP)
    await send(p, am("BackupFailed"))  # after the step: stored
    assert await step(p, 60 - 0.1) == []
    [(action, _)] = await step(p, 0.2)
    assert action == "resolve"


STORM = """
  storm: {groups: 5, within: 2m}
rules:
  - name: db
    match: {alertname: DatabaseDown}
    severity: critical
"""


async def test_storm_folds_groups_beyond_the_threshold_and_unfolds_when_calm(tmp_path):
    p = make(tmp_path, STORM, group_by="[alertname, service]")
    await send(p, *[am("Down", service=f"s{i}") for i in range(20)])
    await send(p, am("DatabaseDown", service="db"))
    events = await step(p, 30)
    storm = [b for a, b in events if b["dedup_key"] == storm_key(KEY)]
    pages = [b for a, b in events if b["dedup_key"] != storm_key(KEY)]
    assert len(pages) == 6  # five groups, and the critical one is never folded
    assert any(b["payload"]["severity"] == "critical" for b in pages)
    assert storm == []  # the storm incident opens at the next look
    [(action, inc)] = await step(p, 1)
    d = inc["payload"]["custom_details"]
    assert action == "trigger" and inc["dedup_key"] == storm_key(KEY)
    assert d["storm"] is True and d["folded_groups"] == 15 and d["folded_alerts"] == 15
    assert len(d["top_groups"]) == 10
    groups = await p.store.groups()
    assert sum(1 for g in groups if g.state.held == "folded") == 15  # all visible
    # half of the folded groups resolve during the storm: nothing is sent for them
    await send(p, *[am("Down", service=f"s{i}", status="resolved") for i in range(5, 12)])
    storm_events = await run(p, 100, every=10)
    assert all(b["dedup_key"] == storm_key(KEY) for _, b in storm_events)
    # calm: the storm incident resolves, the 8 still firing page on their own
    events = await run(p, 120, every=10)
    resolves = [b for a, b in events if a == "resolve"]
    assert [b["dedup_key"] for b in resolves] == [storm_key(KEY)]
    own = [b for a, b in events if a == "trigger"]
    assert len(own) == 8 and all(b["payload"]["custom_details"]["after_storm"] for b in own)


async def test_no_storm_without_the_setting(tmp_path):
    p = make(tmp_path, "", group_by="[alertname, service]")
    await send(p, *[am("Down", service=f"s{i}") for i in range(20)])
    assert len(await step(p, 30)) == 20


CROSS = """
rules:
  - name: by-service
    labels:
      service: "{{ labels.service or labels.component or labels.app }}"
    group_by: [service]
"""


async def test_three_sources_about_one_service_are_one_incident(tmp_path):
    p = make(tmp_path, CROSS)
    await send(p, am("HighLatency", service="checkout"))
    await p.accept(datadog.parse({"title": "[Triggered] Errors up", "tags": "app:checkout"}))
    ev = events_v2.parse({"routing_key": KEY, "event_action": "trigger", "dedup_key": "x",
                          "payload": {"summary": "checkout 5xx", "source": "lb", "severity": "error",
                                      "component": "checkout"}})
    await p.accept_event(ev)
    [(action, body)] = await step(p, 30)
    d = body["payload"]["custom_details"]
    assert action == "trigger" and d["num_firing"] == 3 and d["group"] == {"service": "checkout"}
    assert sorted(a["labels"]["service"] for a in d["alerts"]) == ["checkout"] * 3


GROWTH = """
rules:
  - name: grows
    match: {alertname: Down}
    on_growth: update
"""


async def test_why_each_page_and_what_changed(tmp_path):
    p = make(tmp_path, GROWTH + "    repeat_interval: 10m\n")
    await send(p, am("Down", "a"), am("Down", "b"))
    [(_, first)] = await step(p, 30)
    assert details((_, first))["why"] == "first" and "added" not in details((_, first))
    await send(p, am("Down", "c"), am("Down", "a", status="resolved"))
    [(_, grown)] = await run(p, 70, every=10)
    d = grown["payload"]["custom_details"]
    assert d["why"] == "grown" and [x["instance"] for x in d["added"]] == ["c"]
    assert [x["instance"] for x in d["removed"]] == ["a"]
    [(_, again)] = await run(p, 600, every=30)
    assert again["payload"]["custom_details"]["why"] == "repeat"


@pytest.mark.parametrize("bad,message", [
    ("    flap: {changes: 1, within: 1m, hold: 1m}\n", "flap: changes: 1 must be between 2 and 20"),
    ("    flap: {changes: 3}\n", "flap: must be a mapping with changes, within, hold"),
    ("    storm: {groups: 3, within: 1m}\n", "storm: belongs in defaults"),
    ("    min_alerts: 0\n", "min_alerts: 0 is not a positive whole number"),
])
def test_noise_keys_are_checked(tmp_path, bad, message):
    from proxy.errors import ConfigError

    rules = write_rules(tmp_path / "r", BASE + "rules:\n  - name: x\n" + bad)
    with pytest.raises(ConfigError) as e:
        load_rules([str(rules)])
    assert message in e.value.errors[0]
