"""Window semantics through the pipeline (accept, flush_due) with a manual clock: no sleeping."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from proxy.clock import ManualClock
from proxy.errors import StoreError
from proxy.flush import FLUSH_ALERTS, FLUSH_LEASE
from proxy.ingest import alertmanager
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline
from proxy.rules import RuleSet, load_rules
from proxy.store.memory import MemoryStore
from tests.conftest import KEY, write_rules
from tests.support.pipeline import step

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


def pipeline_for(rules_dir: Path) -> Pipeline:
    return Pipeline(RuleSet(load_rules([str(rules_dir)])), MemoryStore(), ManualClock(), Metrics())


def reload(p: Pipeline, rules_dir: Path) -> None:
    p.rules = RuleSet(load_rules([str(rules_dir)]))


@pytest.fixture
def proxy(tmp_path: Path) -> Pipeline:
    return pipeline_for(write_rules(tmp_path / "rules", RULES))


def alert(name: str, inst: str, status: str = "firing") -> dict[str, object]:
    return {"status": status, "labels": {"alertname": name, "instance": inst}, "annotations": {}}


async def send(p: Pipeline, *alerts: dict[str, object]) -> None:
    await p.accept(alertmanager.parse({"alerts": list(alerts)}))


async def test_group_wait_collects_then_one_trigger(proxy):
    await send(proxy, alert("Down", "a"), alert("Down", "b"))
    assert await step(proxy, 29) == []
    await send(proxy, alert("Down", "c"), alert("Down", "a"))  # a again: one alert
    [(action, body)] = await step(proxy, 1.5)
    assert action == "trigger"
    assert body["payload"]["custom_details"]["num_firing"] == 3
    assert body["payload"]["summary"] == "[FIRING:3] Down"  # Alertmanager's default subject


async def test_transient_alert_never_pages(proxy):
    await send(proxy, alert("Blip", "a"))
    await step(proxy, 10)
    await send(proxy, alert("Blip", "a", "resolved"))
    assert await step(proxy, 60) == []
    assert await proxy.store.groups() == []


async def test_late_joiner_recorded_but_no_second_page(proxy):
    await send(proxy, alert("Down", "a"))
    [(_a, _first)] = await step(proxy, 30)
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
        p = pipeline_for(write_rules(tmp_path / "rules", RULES))
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
    reload(proxy, write_rules(tmp_path / "rules", RULES.replace("rules:\n", dropping, 1)))
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


SUPPRESS = RULES + """
inhibit:
  - source_match: ['alertname="ClusterDown"']
    target_match: ['severity=~"warning|info"']
    equal: [cluster]
maintenance:
  - name: db-patching
    match: {service: db}
    ranges: [{from: "2023-11-14T22:00:00Z", until: "2023-11-14T23:00:00Z"}]
"""


@pytest.fixture
def sproxy(tmp_path: Path) -> Pipeline:
    return pipeline_for(write_rules(tmp_path / "rules", SUPPRESS))  # starts 2023-11-14T22:13:20Z


def lab(name: str, **labels: str) -> dict[str, object]:
    return {"status": labels.pop("status", "firing"), "labels": {"alertname": name, **labels}}


async def test_maintenance_mutes_the_trigger_until_it_ends(sproxy):
    await send(sproxy, lab("DiskFull", service="db", instance="a"))
    assert await step(sproxy, 30) == []  # in the window: no page
    [(action, body)] = await step(sproxy, 47 * 60)  # the window ended at 23:00
    assert action == "trigger" and body["payload"]["custom_details"]["num_firing"] == 1
    text = sproxy.metrics.registry.get_sample_value(
        "alert_proxy_alerts_suppressed_total", {"reason": "maintenance"})
    assert text and text >= 1


async def test_maintenance_never_mutes_a_resolve(sproxy):
    clock = sproxy.clock
    clock.advance(-3600)  # 21:13, before the window
    await send(sproxy, lab("DiskFull", service="db", instance="a"))
    [(action, _)] = await step(sproxy, 30)
    assert action == "trigger"
    clock.advance(3600)  # in the window
    await send(sproxy, lab("DiskFull", service="db", instance="a", status="resolved"))
    [(action, _)] = await step(sproxy, 300)
    assert action == "resolve"


async def test_inhibited_alerts_wait_for_their_source_to_resolve(sproxy):
    await send(sproxy, lab("ClusterDown", cluster="c1", severity="critical"),
               lab("PodLatency", cluster="c1", severity="warning"),
               lab("PodLatency", cluster="c2", severity="warning", instance="x"))
    events = await step(sproxy, 30)
    summaries = sorted(b["payload"]["summary"] for _, b in events)
    # ClusterDown pages; PodLatency pages only for c2 (c1 is inhibited by the cluster outage)
    assert len(events) == 2 and summaries[0].startswith("[FIRING:1] ClusterDown")
    latency = next(b for _, b in events if "PodLatency" in b["payload"]["summary"])
    assert [a["labels"].get("cluster") for a in latency["payload"]["custom_details"]["alerts"]] == ["c2"]
    await send(sproxy, lab("ClusterDown", cluster="c1", severity="critical", status="resolved"))
    events = await step(sproxy, 300)
    assert [a for a, _ in events] == ["resolve"]  # ClusterDown resolved; PodLatency c1 already in a paged group


async def test_alerts_missing_the_group_by_labels_group_together(proxy):
    """As in Alertmanager: a missing label is the empty value, not a page per alert."""
    await send(proxy, {"status": "firing", "labels": {"instance": "a"}},
               {"status": "firing", "labels": {"instance": "b"}})
    [(action, body)] = await step(proxy, 30)
    assert action == "trigger" and body["payload"]["custom_details"]["num_firing"] == 2


async def test_open_windows_survive_a_reload(proxy, tmp_path):
    await send(proxy, alert("Growing", "a"))
    await step(proxy, 10)
    reload(proxy, write_rules(tmp_path / "rules", RULES + "  - name: another\n    match: {alertname: Other}\n    drop: true\n"))
    [(action, body)] = await step(proxy, 20)  # the group opened before the reload flushes
    assert action == "trigger" and body["payload"]["custom_details"]["rule"] == "growth"


def test_rules_match_every_source_through_one_label_view(tmp_path):
    from proxy.ingest import datadog, events_v2
    from proxy.rules import RuleSet, load_rules

    rules = write_rules(tmp_path / "r", RULES + """
  - name: db-team
    match: ['team="db"']
    severity: critical
  - name: web
    match: ['service="web"', 'env=~"prod|staging"']
    severity: warning
""")
    rs = RuleSet(load_rules([str(rules)]))
    ev = events_v2.parse({"routing_key": KEY, "event_action": "trigger", "payload": {
        "summary": "s", "source": "db1", "severity": "info", "custom_details": {"team": "db"}}})
    assert ev.alert is not None
    [p], _ = rs.place(ev.alert)
    assert p.rule.name == "db-team" and p.severity == "critical"
    [dd] = datadog.parse({"title": "[Triggered] x", "tags": "service:web,env:prod"})
    [p], _ = rs.place(dd)
    assert p.rule.name == "web" and p.severity == "warning"
    [dd] = datadog.parse({"title": "[Triggered] x", "tags": "service:web,env:dev"})
    [p], _ = rs.place(dd)
    assert p.rule.name == "defaults"


async def test_flush_says_when_it_stopped_behind(proxy):
    """A flush that runs out of budget with groups still due says so (the flush loop then
    goes on at once instead of waiting for its next poll); the last one says it is done."""
    await send(proxy, *[alert(f"Many{i}", "a") for i in range(450)])
    proxy.clock.advance(31)
    rounds, sent = [], 0
    while True:
        sent += await proxy.flush_due(budget_s=0.0)
        rounds.append(proxy.behind)
        if not proxy.behind:
            break
    assert sent == 450
    assert rounds == [True, True, True, True, False]  # batches of 100, the last not full
    assert await proxy.flush_due(budget_s=0.0) == 0 and not proxy.behind


async def test_a_long_flush_wakes_the_sender_at_its_first_batch(proxy):
    """A flush runs for up to a quarter second; the sender does not wait for its end: it
    is woken as soon as the first batch that enqueued is committed, and once more at the
    end for the rest."""
    flushed: list[float] = []

    def woken() -> None:
        flushed.append(proxy.metrics.registry.get_sample_value(
            "alert_proxy_group_flushes_total", {"result": "trigger"}) or 0.0)

    proxy.on_enqueue = woken
    await send(proxy, *[alert(f"Many{i}", "a") for i in range(450)])
    proxy.clock.advance(31)
    assert await proxy.flush_due(budget_s=10.0) == 450
    assert flushed == [100.0, 450.0]


async def test_flush_that_fails_midway_loses_nothing_and_sends_nothing_twice(proxy):
    """Batches overlap (claims k+1 and k+2, decide k, commit k-1): when the store fails a
    commit midway, the flush raises, what was committed stays committed (and what follows
    a commit happens), and the groups claimed but not committed are flushed once their
    lease ends, each exactly once."""
    store = proxy.store
    real_commit, calls = store.commit, []

    async def failing_commit(commits, durable=True):
        calls.append(len(commits))
        if len(calls) == 2:
            raise StoreError("redis: ConnectionError: gone")
        return await real_commit(commits, durable)

    store.commit = failing_commit
    await send(proxy, *[alert(f"Many{i}", "a") for i in range(450)])
    proxy.clock.advance(31)
    with pytest.raises(StoreError):
        await proxy.flush_due(budget_s=10.0)
    first = {ev.dedup_key for ev in await store.pending()}
    assert calls == [100, 100, 100]  # batch 3's commit went before batch 2's answer came
    assert len(first) == 200  # batches 1 and 3
    flushed = proxy.metrics.registry.get_sample_value("alert_proxy_group_flushes_total", {"result": "trigger"})
    assert flushed == 200  # batch 3's too, though the flush failed before it
    proxy.clock.advance(FLUSH_LEASE + 1)
    while await proxy.flush_due(budget_s=10.0) or proxy.behind:
        pass
    events = await store.pending()
    assert len(events) == 450 and len({ev.dedup_key for ev in events}) == 450
    assert all(ev.action == "trigger" for ev in events)
    flushed = proxy.metrics.registry.get_sample_value("alert_proxy_group_flushes_total", {"result": "trigger"})
    assert flushed == 450  # no group was decided and committed twice


async def test_a_claim_sent_ahead_is_flushed_even_after_an_empty_one(tmp_path: Path):
    """The flush claims two batches ahead while it decides a full one. When the first of
    them came back empty, the second (already sent, its groups leased) was dropped: its
    groups waited out their lease (10 s) before anyone flushed them."""
    p = pipeline_for(write_rules(tmp_path / "rules", RULES.replace("[alertname]", "[alertname, instance]")))
    clock = p.clock
    assert isinstance(clock, ManualClock)
    store = p.store
    real_claim = store.claim_due
    calls: list[float] = []

    async def claim_due(now: float, lease: float, limit: int, alerts: int):  # each claim a second later
        at = clock.now() + len(calls)
        calls.append(at)
        return await real_claim(at, lease, limit, alerts)

    store.claim_due = claim_due  # type: ignore[method-assign]
    await send(p, *[alert("Many", f"i{i}") for i in range(100)])  # one full batch, due at 30 s
    clock.advance(1.5)
    await send(p, alert("Late", "x"))  # due at 31.5 s: the second claim ahead sees it
    clock.advance(28.5)
    await p.flush_due()
    assert len(calls) >= 3
    sent = {orjson.loads(ev.body)["payload"]["custom_details"]["group"]["alertname"]
            for ev in await p.store.pending()}
    assert sent == {"Many", "Late"}


async def test_large_groups_are_claimed_a_few_at_a_time_and_all_flushed(tmp_path: Path):
    """A claim of 100 groups of 1,000 alerts loaded 100,000 alerts in one store call and
    held the event loop ~0.8 s (intake waited: Events v2 p99 0.6 s in bench.run). A claim
    now holds FLUSH_ALERTS alerts at most past its first group, and the flush goes on
    claiming until none are due: one flush_due pages every group."""
    p = pipeline_for(write_rules(tmp_path / "rules", RULES.replace("[alertname]", "[alertname, group]")))
    clock = p.clock
    assert isinstance(clock, ManualClock)
    per_group = FLUSH_ALERTS // 4 + 50  # 4 groups do not fit in one claim, 3 do
    await p.accept(alertmanager.parse({"alerts": [
        {"status": "firing", "labels": {"alertname": "Big", "group": str(g), "instance": str(i)}}
        for g in range(10) for i in range(per_group)]}))
    real_claim = p.store.claim_due
    claimed: list[list[int]] = []

    async def claim_due(now: float, lease: float, limit: int, alerts: int):
        groups = await real_claim(now, lease, limit, alerts)
        claimed.append([len(g.alerts) for g in groups])
        return groups

    p.store.claim_due = claim_due  # type: ignore[method-assign]
    clock.advance(30)
    await p.flush_due()
    assert [len(c) for c in claimed if c] == [3, 3, 3, 1]
    assert all(sum(c) <= FLUSH_ALERTS for c in claimed)
    keys = {orjson.loads(ev.body)["payload"]["custom_details"]["group"]["group"]
            for ev in await p.store.pending()}
    assert keys == {str(g) for g in range(10)}
