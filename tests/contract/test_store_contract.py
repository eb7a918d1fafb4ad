"""One behaviour suite, run against every store (tests/contract/conftest.py lists them:
memory, SQLite, and real redis-servers: plain, TLS, Sentinel, Cluster)."""

from __future__ import annotations

import dataclasses
import math

import orjson
import pytest

from proxy import correlate
from proxy.correlate import Page
from proxy.model import SEEN_STEP, Alert, Flush, GroupAlert, GroupMeta, OutEvent
from proxy.rules.types import Rule
from proxy.state import GroupState, Incident
from proxy.store import Commit, Entry, Recorded, Resolved, Window, from_url
from proxy.store.base import JOB_KEPT, Job

KEY = "0123456789abcdef0123456789abcdef"
KEY2 = "fedcba9876543210fedcba9876543210"
T0 = 1_700_000_000.0
WIN = Window(limit=120, seconds=60.0, reserve=10)


def alert_json(fp: str, group: str, status: str = "firing", severity: str = "error") -> str:
    return GroupAlert(Alert(fingerprint=fp, status=status, labels={"alertname": group, "i": fp},  # type: ignore[arg-type]
                            source="alertmanager"), severity).to_json()


def entry(group: str, fp: str, wait: float = 30.0, urgent: bool = False, max_alerts: int = 3) -> Entry:
    return Entry(group_key=group, meta=GroupMeta("r", KEY, "PD", {"alertname": group}),
                 fingerprint=fp, alert_json=alert_json(fp, group), group_wait=wait,
                 group_interval=300.0, resolve_wait=300.0, max_alerts=max_alerts, urgent=urgent)


def resolved(fp: str, *candidates: tuple[str, OutEvent]) -> Resolved:
    """A resolve that carries only the fingerprint, as an Events v2 resolve does."""
    return Resolved(fp, orjson.dumps({"fingerprint": fp, "status": "resolved", "labels": {}}).decode(),
                    full=False, candidates=list(candidates))


def ev(dk: str, action: str = "trigger", severity: str = "error", body: bytes = b"{}",
       rk: str = KEY) -> OutEvent:
    return OutEvent(rk, dk, action, severity, body, key_name="PD", enqueued_at=T0)  # type: ignore[arg-type]


async def flushed(store, key: str, now: float, events: list[OutEvent] | None = None,
                  delete: bool = False, trigger: bool = True) -> bool:
    """Claim-free flush of one group: load, mark triggered, commit."""
    g = await store.load(key)
    assert g is not None
    correlate.apply(g, Flush(["trigger"] if trigger else [], delete, now + 14400), Page("first"), now,
                    Rule(name="r"))
    [ok] = await store.commit([Commit(g, delete, events or [])])
    return ok


async def take_all(store, now: float, rk: str = KEY) -> list[OutEvent]:
    out = []
    while (t := await store.take(rk, now, 60, WIN)).event is not None:
        out.append(t.event)
        await store.done(t.event, t.stamp, now)
    return out


# -- windows ------------------------------------------------------------------------------
async def test_record_opens_group_due_after_group_wait(store):
    await store.record([entry("g1", "a"), entry("g1", "b"), entry("g1", "a")], [], T0)
    assert await store.claim_due(T0 + 29, 30, 10) == []
    [g] = await store.claim_due(T0 + 30, 30, 10)
    assert await store.claim_due(T0 + 31, 30, 10) == []  # leased
    assert g.key == "g1" and sorted(g.alerts) == ["a", "b"]
    assert g.rule == "r" and g.routing_key == KEY and g.group_labels == {"alertname": "g1"}
    assert g.opened_at == T0 and not g.triggered and g.last_seen == T0
    assert g.alerts["a"].labels == {"alertname": "g1", "i": "a"} and g.alerts["a"].severity == "error"


async def test_a_commit_that_did_not_go_in_keeps_the_lease(store):
    """The flusher whose commit failed (the group changed) loads and plans it again: the
    group stays its own until the lease ends (SQLite let another claim take it; found by
    tests/contract/test_differential.py)."""
    await store.record([entry("g1", "a")], [], T0)
    [g] = await store.claim_due(T0 + 30, 30, 10)
    await store.record([entry("g1", "b")], [], T0 + 31)  # the version moves
    g.last_flush_at, g.due = T0 + 32, T0 + 3600
    assert await store.commit([Commit(g, False, [])]) == [False]
    assert await store.claim_due(T0 + 33, 30, 10) == []
    assert [g.key for g in await store.claim_due(T0 + 61, 30, 10)] == ["g1"]


async def test_lease_runs_out_and_group_is_claimed_again(store):
    await store.record([entry("g1", "a")], [], T0)
    assert [g.key for g in await store.claim_due(T0 + 30, 30, 10)] == ["g1"]
    assert [g.key for g in await store.claim_due(T0 + 61, 30, 10)] == ["g1"]  # the first claimer died


async def test_urgent_lane_is_claimed_first(store):
    await store.record([entry(f"info{i}", f"i{i}", wait=1) for i in range(5)], [], T0)
    await store.record([entry("crit", "c", wait=1, urgent=True)], [], T0 + 5)
    [first, *_] = await store.claim_due(T0 + 10, 30, 2)
    assert first.key == "crit" and first.urgent
    # a critical alert joining an older group moves it to the urgent lane
    await store.record([entry("late", "x", wait=1)], [], T0)
    await store.record([entry("late", "y", wait=1, urgent=True)], [], T0 + 0.5)
    [g] = await store.claim_due(T0 + 10, 30, 1)
    assert g.key == "late"


async def test_a_claim_ends_before_a_group_whose_alerts_pass_its_bound(store):
    """Large groups are claimed a few at a time (semantics.claim_takes): a claim takes
    groups in order while their alerts stay within `alerts`; the first whatever its size;
    the urgent lane counts too."""
    sizes = {"a": 3, "b": 2, "c": 1, "d": 3}
    for i, (g, n) in enumerate(sizes.items()):
        await store.record([entry(g, f"{g}{j}", wait=1 + i) for j in range(n)], [], T0)
    await store.record([entry("u", "u0", wait=5, urgent=True)], [], T0)
    assert [g.key for g in await store.claim_due(T0 + 10, 30, 10, alerts=3)] == ["u"]  # 1+3 > 3
    assert [g.key for g in await store.claim_due(T0 + 10, 30, 10, alerts=2)] == ["a"]  # the first, at 3
    claimed = await store.claim_due(T0 + 10, 30, 10, alerts=3)
    assert [(g.key, len(g.alerts)) for g in claimed] == [("b", 2), ("c", 1)]
    assert [g.key for g in await store.claim_due(T0 + 10, 30, 10, alerts=0)] == ["d"]
    assert await store.claim_due(T0 + 10, 30, 10, alerts=0) == []


async def test_resolved_alert_for_unknown_group_is_ignored(store):
    assert (await store.record([], [resolved("zz")], T0)).lost == 0
    assert await store.groups() == []


async def test_commit_checks_version_and_enqueues_atomically(store):
    await store.record([entry("g1", "a")], [], T0)
    [g] = await store.claim_due(T0 + 30, 30, 10)
    await store.record([entry("g1", "b")], [], T0 + 30.5)  # changes the group meanwhile
    g.triggered, g.due, g.last_flush_at = True, T0 + 3600, T0 + 30
    assert await store.commit([Commit(g, False, [ev("g1")])]) == [False]
    assert await store.pending() == []
    g = await store.load("g1")
    assert g is not None and len(g.alerts) == 2
    g.triggered, g.last_trigger_at, g.last_flush_at, g.due = True, T0 + 31, T0 + 31, T0 + 3600
    g.state = GroupState(pd=Incident(status="triggered"))
    assert await store.commit([Commit(g, False, [ev("g1")])]) == [True]
    assert await store.commit([Commit(g, False, [])]) == [False]  # a commit bumps the version too
    [p] = await store.pending()
    assert p.dedup_key == "g1" and p.action == "trigger"
    g2 = await store.load("g1")
    assert g2 is not None and g2.triggered and g2.last_trigger_at == T0 + 31
    assert g2.state.pd == Incident(status="triggered") and g2.version > g.version


async def test_commit_batches_groups(store):
    await store.record([entry(f"g{i}", f"f{i}") for i in range(50)], [], T0)
    groups = await store.claim_due(T0 + 30, 30, 100)
    assert len(groups) == 50
    for g in groups:
        correlate.apply(g, Flush(["trigger"], False, T0 + 3600), Page("first"), T0 + 30, Rule(name="r"))
    assert await store.commit([Commit(g, False, [ev(g.key)]) for g in groups]) == [True] * 50
    assert len(await store.pending()) == 50


async def test_resolve_after_trigger_waits_group_interval(store):
    await store.record([entry("g1", "a")], [], T0)
    await store.claim_due(T0 + 30, 30, 10)
    assert await flushed(store, "g1", T0 + 30)
    await store.record([], [resolved("a")], T0 + 40)
    assert await store.claim_due(T0 + 329, 30, 10) == []
    [g] = await store.claim_due(T0 + 330, 30, 10)
    assert g.alerts["a"].status == "resolved" and g.alerts["a"].changes == (T0 + 40,)
    assert g.alerts["a"].labels == {"alertname": "g1", "i": "a"}  # kept from the firing alert
    assert await store.commit([Commit(g, True, [ev("g1", "resolve")])]) == [True]
    assert await store.groups() == [] and await store.groups_of("a") == []


async def test_status_changes_are_remembered_and_bounded(store):
    await store.record([entry("g1", "a")], [], T0)
    for i in range(1, 30):
        if i % 2:
            await store.record([], [resolved("a")], T0 + i)
        else:
            await store.record([entry("g1", "a")], [], T0 + i)
    g = await store.load("g1")
    assert g is not None and len(g.alerts["a"].changes) == 20
    assert g.alerts["a"].changes[-1] == T0 + 29 and g.alerts["a"].status == "resolved"


async def test_last_seen_follows_every_refresh_in_steps(store):
    await store.record([entry("g1", "a")], [], T0)
    v = (await store.load("g1")).version
    await store.record([entry("g1", "a")], [], T0 + 100)  # the same alert, unchanged
    g = await store.load("g1")
    assert g is not None and g.last_seen == T0 + 100 and g.version == v
    await store.record([entry("g1", "a")], [], T0 + 100 + SEEN_STEP * 0.9)  # within the step: kept
    assert (await store.load("g1")).last_seen == T0 + 100
    await store.record([entry("g1", "b")], [], T0 + 100 + SEEN_STEP * 0.95)  # a change alone moves nothing
    assert (await store.load("g1")).last_seen == T0 + 100
    await store.record([entry("g1", "a")], [], T0 + 100 + SEEN_STEP)
    assert (await store.load("g1")).last_seen == T0 + 100 + SEEN_STEP


async def test_a_repeat_keeps_the_newest_json_and_a_bare_resolve_keeps_it_too(store):
    """A repeat whose JSON changed (an annotation, a new summary) is stored; an unchanged
    one leaves the alert as it is; an Events v2 resolve (its fingerprint alone) changes the
    status and keeps the JSON the group had."""
    e = entry("g1", "a")
    await store.record([e], [], T0)
    newer = dataclasses.replace(e, alert_json=e.alert_json.replace('"labels"', '"summary":"disk 97%","labels"'))
    for t, sent, summary in ((1, newer, "disk 97%"), (2, newer, "disk 97%"), (3, e, ""), (4, e, ""),
                             (5, newer, "disk 97%")):
        await store.record([sent], [], T0 + t)
        g = await store.load("g1")
        assert g is not None and g.alerts["a"].alert.summary == summary, t
    await store.record([], [resolved("a")], T0 + 6)
    g = await store.load("g1")
    assert g is not None and g.alerts["a"].status == "resolved"
    assert g.alerts["a"].alert.summary == "disk 97%"


async def test_max_alerts_counts_overflow(store):
    await store.record([entry("g1", str(i)) for i in range(5)], [], T0)
    g = await store.load("g1")
    assert g is not None and len(g.alerts) == 3 and g.overflow == 2


async def test_groups_of_fingerprint(store):
    await store.record([entry("g1", "a"), entry("g2", "a"), entry("g2", "b")], [], T0)
    assert sorted(g.key for g in await store.groups_of("a")) == ["g1", "g2"]
    assert [g.key for g in await store.groups_of("b")] == ["g2"]


async def test_lost_group_gets_its_resolve_once_and_a_transient_none(store):
    lost = ev("lost-group", "resolve")
    assert (await store.record([], [resolved("x", ("lost-group", lost))], T0)).lost == 1
    assert (await store.record([], [resolved("x", ("lost-group", lost))], T0 + 1)).lost == 0  # tombstoned
    assert [(e.dedup_key, e.action) for e in await store.pending()] == [("lost-group", "resolve")]
    # a transient group: deleted without a page, its late resolve is not sent
    await store.record([entry("blip", "b")], [], T0)
    await store.claim_due(T0 + 30, 30, 10)
    assert await flushed(store, "blip", T0 + 30, delete=True, trigger=False)
    assert (await store.record([], [resolved("b", ("blip", ev("blip", "resolve")))], T0 + 40)).lost == 0
    # an open group holding the alert takes the resolve: no fallback
    await store.record([entry("open", "o")], [], T0)
    assert (await store.record([], [resolved("o", ("open", ev("open", "resolve")))], T0 + 1)).lost == 0


async def test_forgets_resolved_groups_and_delivered_events(store):
    await store.record([entry(f"g{i}", f"f{i}") for i in range(20)], [], T0)
    for g in await store.claim_due(T0 + 30, 30, 100):
        assert await flushed(store, g.key, T0 + 30, [ev(g.key)])
    await store.record([], [resolved(f"f{i}") for i in range(20)], T0 + 40)
    for g in await store.claim_due(T0 + 400, 30, 100):
        assert await flushed(store, g.key, T0 + 400, [ev(g.key, "resolve")], delete=True)
    assert len(await take_all(store, T0 + 400)) == 40
    fp = {k: v for k, v in (await store.footprint()).items() if v}
    assert fp.pop("budgets", 0) <= 1  # the key's send stamps stay for their 60 s
    assert fp == {"tombstones": 20}, fp


# -- outbox -------------------------------------------------------------------------------
async def test_outbox_order_per_dedup_key_and_priority(store):
    await store.enqueue([ev("info1", severity="info"), ev("crit", "trigger", "critical"),
                         ev("x", "trigger", "warning")])
    await store.enqueue([ev("x", "resolve"), ev("r", "resolve")])
    order = [(e.dedup_key, e.action) for e in await take_all(store, T0)]
    # critical first, then resolves; x's resolve never overtakes its trigger; info last
    assert order == [("crit", "trigger"), ("r", "resolve"), ("x", "trigger"), ("x", "resolve"),
                     ("info1", "trigger")]
    t = await store.take(KEY, T0, 60, WIN)
    assert t.event is None and math.isinf(t.wait)
    assert await store.outbox_keys() == []


async def test_pending_triggers_coalesce_into_the_newest(store):
    await store.enqueue([ev("d", body=b'{"n":1}')])
    await store.enqueue([ev("d", body=b'{"n":2}')])
    [p] = await store.pending()
    assert p.body == b'{"n":2}'
    t = await store.take(KEY, T0, 60, WIN)  # in flight: a newer trigger queues behind it
    await store.enqueue([ev("d", body=b'{"n":3}')])
    assert [x.body for x in await store.pending()] == [b'{"n":2}', b'{"n":3}']
    assert t.event is not None


async def test_coalesced_trigger_takes_the_newest_priority(store):
    await store.enqueue([ev("a", severity="info"), ev("b", severity="warning")])
    await store.enqueue([ev("a", severity="critical")])
    assert [e.dedup_key for e in await take_all(store, T0)] == ["a", "b"]


async def test_leased_event_is_not_taken_twice_until_its_lease_ends(store):
    await store.enqueue([ev("d")])
    t = await store.take(KEY, T0, 30, WIN)
    assert t.event is not None
    nothing = await store.take(KEY, T0 + 1, 30, WIN)
    assert nothing.event is None and 28 <= nothing.wait <= 30  # until the lease ends
    again = await store.take(KEY, T0 + 31, 30, WIN)  # the sender died: taken over
    assert again.event is not None and again.event.seq == t.event.seq


async def test_retry_backoff_then_dead_letter_and_requeue(store):
    await store.enqueue([ev("d"), ev("e")])
    t = await store.take(KEY, T0, 30, WIN)
    assert t.event is not None and t.event.dedup_key == "d"
    await store.retry(t.event, t.stamp, T0 + 10, "HTTP 500", count=True, now=T0)
    n = await store.take(KEY, T0 + 1, 30, WIN)
    assert n.event is not None and n.event.dedup_key == "e"  # d waits, e goes on
    await store.dead(n.event, n.stamp, "HTTP 400: invalid", T0 + 1)
    w = await store.take(KEY, T0 + 5, 30, WIN)
    assert w.event is None and abs(w.wait - 5) < 0.01  # d's backoff ends at T0 + 10
    back = await store.take(KEY, T0 + 10, 30, WIN)
    assert back.event is not None and back.event.dedup_key == "d" and back.event.attempts == 1
    assert back.event.last_error == "HTTP 500"
    await store.done(back.event, back.stamp, T0 + 10)
    [dead] = await store.dead_letters()
    assert dead.dedup_key == "e" and "HTTP 400" in dead.last_error
    assert await store.requeue_dead(None) == 1
    assert await store.dead_letters() == []
    again = await store.take(KEY, T0 + 11, 30, WIN)
    assert again.event is not None and again.event.dedup_key == "e"


async def test_release_gives_back_event_and_budget(store):
    await store.enqueue([ev("d")])
    t = await store.take(KEY, T0, 30, WIN)
    assert t.event is not None and await store.sent_in_window(KEY, T0, WIN) == 1
    await store.release(t.event, t.stamp, T0)
    assert await store.sent_in_window(KEY, T0, WIN) == 0
    again = await store.take(KEY, T0, 30, WIN)
    assert again.event is not None and again.event.seq == t.event.seq and again.event.attempts == 0


# -- the budget: PagerDuty's sliding window, exactly ------------------------------------------
async def test_window_sends_at_once_while_it_has_room_then_waits_exactly(store):
    await store.enqueue([ev(f"d{i}", severity="info") for i in range(200)])
    sent = await take_all(store, T0)
    assert len(sent) == 110  # 120 less the reserve for critical triggers, at once
    t = await store.take(KEY, T0 + 1, 30, WIN)
    assert t.event is None and abs(t.wait - 59) < 0.01  # the first stamp leaves the window
    assert len(await take_all(store, T0 + 60)) == 90


async def test_critical_trigger_spends_the_reserve(store):
    await store.enqueue([ev(f"d{i}", severity="warning") for i in range(150)])
    assert len(await take_all(store, T0)) == 110
    await store.enqueue([ev(f"crit{i}", severity="critical") for i in range(15)])
    crit = await take_all(store, T0 + 1)
    assert [e.dedup_key for e in crit] == [f"crit{i}" for i in range(10)]  # 120 in the window


async def test_window_is_never_exceeded(store):
    """A storm larger than the budget, taken as fast as the store allows over 200 s of
    simulated time: never more than 120 stamps in any 60 s."""
    await store.enqueue([ev(f"d{i}", severity=("critical", "info", "warning")[i % 3])
                         for i in range(600)])
    times: list[float] = []
    t = T0
    while t < T0 + 200:
        take = await store.take(KEY, t, 30, WIN)
        if take.event is not None:
            await store.done(take.event, take.stamp, t + 0.2)  # the answer comes 0.2 s later
            times.append(t + 0.2)
            continue
        t += max(0.01, min(take.wait, 1.0))
    for i, s in enumerate(times):
        assert sum(1 for x in times[i:] if x < s + 60) <= 120
    assert len(times) >= 3 * 110  # and it does not starve


async def test_settled_stamp_moves_to_the_answer_time(store):
    """A stamp is first the take's time, then the answer's: PagerDuty received the event
    before it answered, so the window counts it until 60 s after the answer."""
    one = Window(limit=1, seconds=60.0, reserve=0)
    await store.enqueue([ev("a", severity="critical"), ev("b", severity="critical")])
    t = await store.take(KEY, T0, 30, one)
    assert t.event is not None
    await store.done(t.event, t.stamp, T0 + 5)  # PagerDuty answered 5 s later
    late = await store.take(KEY, T0 + 61, 30, one)
    assert late.event is None and abs(late.wait - 4) < 0.01
    assert (await store.take(KEY, T0 + 65, 30, one)).event is not None


async def test_budget_is_per_routing_key(store):
    await store.enqueue([ev(f"a{i}", severity="info") for i in range(120)] +
                        [ev(f"b{i}", severity="info", rk=KEY2) for i in range(5)])
    assert len(await take_all(store, T0)) == 110
    assert len(await take_all(store, T0, rk=KEY2)) == 5


async def test_pause(store):
    await store.enqueue([ev("d")])
    await store.pause(KEY, T0 + 100)
    await store.pause(KEY, T0 + 50)  # never shortens a pause
    t = await store.take(KEY, T0, 30, WIN)
    assert t.event is None and t.wait == 100
    assert (await store.take(KEY, T0 + 100, 30, WIN)).event is not None


# -- the rest -----------------------------------------------------------------------------
async def test_inhibition_marks_follow_firing_sources(store):
    await store.record([], [], T0, [("m1", "src-a"), ("m1", "src-b"), ("m2", "src-a")])
    assert await store.marked(["m1", "m2", "m3"]) == {"m1": {"src-a", "src-b"}, "m2": {"src-a"},
                                                      "m3": set()}
    await store.record([], [resolved("src-a")], T0 + 1)
    assert await store.marked(["m1", "m2"]) == {"m1": {"src-b"}, "m2": set()}


async def test_stats_come_from_counters(store):
    await store.record([entry("g1", "a"), entry("g2", "b")], [], T0)
    await store.enqueue([ev("d"), ev("e"), ev("f")])
    t = await store.take(KEY, T0 + 1, 30, WIN)
    assert t.event is not None
    await store.dead(t.event, t.stamp, "HTTP 400", T0 + 1)
    st = await store.stats(T0 + 2, WIN)
    assert st.groups_open == 2 and st.dead == 1 and st.oldest_due == T0 + 30
    k = st.keys["PD"]
    assert k.depth == 2 and k.oldest_enqueued_at == T0 and k.sent_in_window == 1


async def test_keys_that_share_a_name_add_up(store):
    """The metrics are labelled by a key's name: two keys named alike count together."""
    await store.enqueue([ev("d"), ev("e", rk=KEY2), ev("f", rk=KEY2)])
    t = await store.take(KEY2, T0 + 1, 30, WIN)
    assert t.event is not None
    await store.done(t.event, t.stamp, T0 + 1)
    k = (await store.stats(T0 + 2, WIN)).keys["PD"]
    assert (k.depth, k.sent_in_window) == (2, 1)


async def test_first_time_is_once_while_remembered(store):
    assert await store.first_time("webhook-1", T0, 60) is True
    assert await store.first_time("webhook-1", T0 + 1, 60) is False
    assert await store.first_time("webhook-2", T0 + 1, 60) is True


async def test_hourly_counts_add_up_and_stay_bounded(store):
    h = int(T0 // 3600)
    await store.add_counts(h, {"in|alertmanager": 3, "page|trigger": 1})
    await store.add_counts(h, {"in|alertmanager": 2, "ttp_sum": 12.5})
    await store.add_counts(h + 1, {"in|datadog": 1})
    assert await store.counts(h) == {h: {"in|alertmanager": 5, "page|trigger": 1, "ttp_sum": 12.5},
                                     h + 1: {"in|datadog": 1}}
    assert await store.counts(h + 1) == {h + 1: {"in|datadog": 1}}
    await store.add_counts(h + 2, {f"in_service|s{i}": 1 for i in range(1100)})
    got = (await store.counts(h + 2))[h + 2]
    assert len(got) == 1001 and got["in_service|(other)"] == 100
    await store.add_counts(h + 14 * 24, {"x": 1})  # two weeks on: the first hours are gone
    assert h not in await store.counts(h)


async def test_heads_and_load_many(store):
    await store.record([entry("g1", "a"), entry("g1", "b"), entry("g2", "c")], [], T0)
    heads = {g.key: g for g in await store.heads()}
    assert set(heads) == {"g1", "g2"} and heads["g1"].n_alerts == 2 and heads["g1"].alerts == {}
    assert heads["g1"].group_labels == {"alertname": "g1"}
    [g2, g1] = await store.load_many(["g2", "g1", "gone"])
    assert (g2.key, g1.key) == ("g2", "g1") and sorted(g1.alerts) == ["a", "b"]


async def test_max_groups_refuses_a_new_group_but_not_alerts_of_open_ones(store):
    from proxy.errors import StoreFull

    await store.record([entry("g1", "a"), entry("g2", "b")], [], T0, max_groups=2)
    with pytest.raises(StoreFull):
        await store.record([entry("g1", "c"), entry("g3", "d")], [], T0, max_groups=2)
    assert sorted(g.key for g in await store.groups()) == ["g1", "g2"]
    assert sorted((await store.load("g1")).alerts) == ["a"]  # nothing of the refused request
    await store.record([entry("g1", "c")], [], T0, max_groups=2)
    assert sorted((await store.load("g1")).alerts) == ["a", "c"]


async def test_max_groups_bounds_the_groups_of_every_routing_key_together(store, monkeypatch):
    """The limit is the whole store's: on a Cluster the routing keys' groups sit in
    different partitions, and one partition's room is the limit less what the others hold
    (read at most redis_parts.SIZES_EVERY seconds ago; here, at every request)."""
    from proxy.errors import StoreFull
    from proxy.store import redis_parts

    monkeypatch.setattr(redis_parts, "SIZES_EVERY", 0.0)
    keys = [f"{i:032x}" for i in range(1, 9)]  # 8 keys: on 16 partitions, several of them

    def keyed(i: int, fp: str) -> Entry:
        return dataclasses.replace(entry(f"g{i}", fp), meta=GroupMeta("r", keys[i], f"K{i}", {"alertname": f"g{i}"}))

    for i in range(6):
        await store.record([keyed(i, f"a{i}")], [], T0, max_groups=6)
    for i in (6, 7):
        with pytest.raises(StoreFull, match="holds 6 open groups"):
            await store.record([keyed(i, f"a{i}")], [], T0, max_groups=6)
    assert len(await store.groups()) == 6
    await store.record([keyed(0, "b0"), keyed(5, "b5")], [], T0, max_groups=6)  # open ones still take alerts
    assert sorted((await store.load("g5")).alerts) == ["a5", "b5"]


async def test_sqlite_lease_ends_with_its_process_and_an_unsynced_flush_is_kept(tmp_path):
    """SQLite has one writer, so a claim's lease lives in that process: after a restart the
    group is due at once (a flusher that died does not hold it for a lease). A flush
    committed without a sync (durable=False) is in the file once the store is closed."""
    url = f"sqlite://{tmp_path}/state.db"
    s = from_url(url)
    await s.record([entry("g1", "a"), entry("g2", "b")], [], T0)
    claimed = await s.claim_due(T0 + 30, 30, 10)
    assert sorted(g.key for g in claimed) == ["g1", "g2"]
    assert await s.claim_due(T0 + 31, 30, 10) == []  # leased
    g2 = next(g for g in claimed if g.key == "g2")
    g2.due, g2.triggered, g2.last_flush_at = T0 + 330, True, T0 + 31
    assert await s.commit([Commit(g2, False, [ev("g2")])], durable=False) == [True]
    await s.close()
    s = from_url(url)
    try:
        assert [g.key for g in await s.claim_due(T0 + 32, 30, 10)] == ["g1"]
        assert [e.dedup_key for e in await s.pending()] == ["g2"]
    finally:
        await s.close()


# -- dead letters ---------------------------------------------------------------------------
async def _reopened(store):
    """The same data through a new store object (a restart); None for memory://."""
    if store.url.startswith("memory://"):
        return None
    await store.close()
    return from_url(store.url, prefix=store.n.p.strip("{}")) if hasattr(store, "n") else from_url(store.url)


async def _dead_once(store, now: float) -> OutEvent:
    t = await store.take(KEY, now, 30, WIN)
    assert t.event is not None
    await store.dead(t.event, t.stamp, "HTTP 400: invalid", now)
    return t.event


async def test_sequence_numbers_are_never_given_twice(store):
    """A dead letter keeps its number; an event enqueued after it never gets the same one
    (SQLite gave the newest number again once its row was gone), also after a restart and
    after `deadletter retry`, so each rejected event reaches the dead letters."""
    await store.enqueue([ev("bad1")])
    first = await _dead_once(store, T0)
    await store.enqueue([ev("bad2")])
    second = await _dead_once(store, T0 + 1)
    assert second.seq > first.seq
    reopened = await _reopened(store)
    if reopened is not None:
        store = reopened
    await store.enqueue([ev("bad3")])
    third = await _dead_once(store, T0 + 2)
    assert third.seq > second.seq
    assert await store.requeue_dead([first.seq]) == 1
    again = await _dead_once(store, T0 + 3)  # rejected again after the retry
    assert again.dedup_key == "bad1" and again.seq > third.seq
    dead = await store.dead_letters()
    assert sorted(e.dedup_key for e in dead) == ["bad1", "bad2", "bad3"]
    assert len({e.seq for e in dead}) == 3
    assert await take_all(store, T0 + 4) == []
    await store.close()


async def test_many_dead_letters_never_block_the_events_behind_them_on_their_key(store):
    await store.enqueue([ev(f"bad{i}") for i in range(30)] + [ev("good", severity="critical")])
    sent = []
    for i in range(31):
        t = await store.take(KEY, T0 + i, 30, WIN)
        assert t.event is not None
        if t.event.dedup_key == "good":
            sent.append(t.event.dedup_key)
            await store.done(t.event, t.stamp, T0 + i)
        else:
            await store.dead(t.event, t.stamp, "HTTP 400", T0 + i)
    assert sent == ["good"]
    assert len(await store.dead_letters()) == 30
    assert (await store.take(KEY, T0 + 40, 30, WIN)).event is None
    assert (await store.stats(T0 + 40, WIN)).dead == 30


async def test_sqlite_file_from_before_autoincrement_is_carried_over(tmp_path):
    """A file written by an earlier version (outbox numbers given again) is converted at
    start: its events are kept, and numbers go on above every dead letter's."""
    import sqlite3

    path = tmp_path / "old.db"
    old = from_url(f"sqlite://{path}")
    await old.enqueue([ev("kept")])
    await old.close()
    conn = sqlite3.connect(path)
    conn.executescript("""
        ALTER TABLE outbox RENAME TO o; CREATE TABLE outbox AS SELECT * FROM o; DROP TABLE o;
        DELETE FROM sqlite_sequence;
        ALTER TABLE stamps RENAME TO s;
        CREATE TABLE stamps (id INTEGER PRIMARY KEY, rk TEXT NOT NULL, at REAL NOT NULL);
        DROP TABLE s;
        INSERT INTO stamps (id, rk, at) VALUES (3, '0123456789abcdef0123456789abcdef', 1700000000);
        INSERT INTO dead (seq, rk, dk, action, severity, body, key_name, attempts, enqueued_at,
                          last_error) VALUES (7, 'rk', 'old-dead', 'trigger', 'error', x'7b7d', 'PD', 1, 0, 'x');
    """)
    assert "AUTOINCREMENT" not in conn.execute(
        "SELECT sql FROM sqlite_master WHERE name = 'outbox'").fetchone()[0]
    conn.close()
    store = from_url(f"sqlite://{path}")
    await store.enqueue([ev("new")])
    pending = await store.pending()
    assert [e.dedup_key for e in pending] == ["kept", "new"] and pending[1].seq > 7
    await _dead_once(store, T0)
    await _dead_once(store, T0)
    assert sorted(e.dedup_key for e in await store.dead_letters()) == ["kept", "new", "old-dead"]
    assert await store.sent_in_window(KEY, T0, WIN) == 3  # the old stamp is kept
    await store.close()
    conn = sqlite3.connect(path)
    assert "AUTOINCREMENT" in conn.execute("SELECT sql FROM sqlite_master WHERE name = 'stamps'").fetchone()[0]
    conn.close()


async def test_sqlite_file_from_before_the_json_hash_is_carried_over(tmp_path):
    """A file whose alerts have no JSON hash (`jh`) gets the column and the covering index
    at start: its alerts are kept, a changed repeat is stored and resolves find them."""
    import sqlite3

    path = tmp_path / "old.db"
    old = from_url(f"sqlite://{path}")
    e = entry("g1", "a")
    await old.record([e, entry("g1", "b")], [], T0)
    await old.close()
    conn = sqlite3.connect(path)
    conn.executescript("""
        ALTER TABLE alerts RENAME TO a;
        CREATE TABLE alerts (gkey TEXT NOT NULL, fp TEXT NOT NULL, status TEXT NOT NULL,
          json TEXT NOT NULL, PRIMARY KEY (gkey, fp)) WITHOUT ROWID;
        INSERT INTO alerts SELECT gkey, fp, status, json FROM a; DROP TABLE a;
        CREATE INDEX alerts_fp ON alerts(fp);
    """)
    conn.close()
    store = from_url(f"sqlite://{path}")
    newer = dataclasses.replace(e, alert_json=e.alert_json.replace('"labels"', '"summary":"disk 97%","labels"'))
    assert await store.record([newer, entry("g1", "b")], [], T0 + 1) == Recorded(0, 0, 0)
    assert await store.record([], [resolved("b")], T0 + 2) == Recorded(0, 0, 1)
    g = await store.load("g1")
    assert g is not None and g.alerts["a"].alert.summary == "disk 97%" and g.alerts["b"].status == "resolved"
    await store.close()
    conn = sqlite3.connect(path)
    names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE tbl_name = 'alerts'")}
    conn.close()
    assert "alerts_held" in names and "alerts_fp" not in names


async def test_a_late_answer_settles_its_own_stamp_not_a_newer_one(store):
    """A send whose answer comes after its stamp left the window: releasing it must not undo
    the stamp of a later send (SQLite gave a deleted stamp's number again; found by
    tests/contract/test_differential.py)."""
    await store.enqueue([ev("a"), ev("b")])
    first = await store.take(KEY, T0, 300, WIN)
    later = await store.take(KEY, T0 + 61, 300, WIN)  # the first stamp has left the window
    assert first.event is not None and later.event is not None
    await store.release(first.event, first.stamp, T0 + 62)
    assert await store.sent_in_window(KEY, T0 + 62, WIN) == 1


async def test_silences_are_kept_replaced_by_id_and_forgotten_after_they_end(store):
    await store.put_silence("s1", '{"id": "s1", "v": 1}', T0 + 100)
    await store.put_silence("s2", '{"id": "s2"}', T0 + 10)
    await store.put_silence("s1", '{"id": "s1", "v": 2}', T0 + 200)  # an update
    assert sorted(await store.silences()) == ['{"id": "s1", "v": 2}', '{"id": "s2"}']
    assert await store.forget_silences(T0 + 10) == 0  # (ended before: strictly)
    assert await store.forget_silences(T0 + 150) == 1
    assert await store.silences() == ['{"id": "s1", "v": 2}']


async def test_record_tells_transitions_apart_from_redeliveries(store):
    """Alertmanager re-sends every alert of a group each group_interval: only a change of
    state counts, each alert once however many groups hold it."""
    both = [entry("g1", "a"), entry("g2", "a"), entry("g1", "b")]  # a: in two groups
    assert await store.record(both, [], T0) == Recorded(0, 2, 0)
    assert await store.record(both, [], T0 + 10) == Recorded(0, 0, 0)  # a redelivery
    assert await store.record([], [resolved("a")], T0 + 20) == Recorded(0, 0, 1)
    assert await store.record([], [resolved("a")], T0 + 30) == Recorded(0, 0, 0)
    assert await store.record([entry("g1", "a")], [], T0 + 40) == Recorded(0, 1, 0)  # again


async def test_jobs_are_queued_once_claimed_under_a_lease_retried_and_ended(store):
    assert await store.add_job(Job("slack:ev1", '{"a": 1}'), T0) is True
    assert await store.add_job(Job("slack:ev1", '{"a": 2}'), T0 + 1) is False  # a repeat
    assert await store.add_job(Job("jira:ev1", '{"b": 1}'), T0 + 1) is True
    got = await store.claim_jobs(T0 + 2, 30, 10)
    assert [(j.id, j.blob, j.tries) for j in got] == [("slack:ev1", '{"a": 1}', 0), ("jira:ev1", '{"b": 1}', 0)]
    assert await store.claim_jobs(T0 + 3, 30, 10) == []  # leased
    slack = got[0]
    await store.end_job(Job(slack.id, slack.blob, 1, "500 rollup_error"), "retry", T0 + 3, due=T0 + 10)
    assert await store.claim_jobs(T0 + 9, 30, 10) == []
    again = await store.claim_jobs(T0 + 10, 30, 10)
    assert [(j.id, j.tries, j.error) for j in again] == [("slack:ev1", 1, "500 rollup_error")]
    await store.end_job(again[0], "done", T0 + 11)
    assert await store.add_job(Job("slack:ev1", "{}"), T0 + 12) is False  # done: remembered
    assert await store.claim_jobs(T0 + 40, 30, 10) == [Job("jira:ev1", '{"b": 1}', 0)]  # lease ended
    await store.end_job(Job("jira:ev1", '{"b": 1}', 1, "400 project"), "dead", T0 + 41)
    assert await store.dead_jobs() == [Job("jira:ev1", '{"b": 1}', 1, "400 project")]
    assert await store.claim_jobs(T0 + 1000, 30, 10) == []
    # forgotten after JOB_KEPT: the same id may be queued again
    assert await store.add_job(Job("slack:ev1", "{}"), T0 + 11 + JOB_KEPT) is True


async def test_jobs_come_in_due_order_up_to_the_limit(store):
    for i in (3, 1, 2):
        assert await store.add_job(Job(f"j{i}", str(i)), T0 + i)
    assert [j.id for j in await store.claim_jobs(T0 + 5, 30, 2)] == ["j1", "j2"]
    assert [j.id for j in await store.claim_jobs(T0 + 5, 30, 2)] == ["j3"]


async def test_a_memo_is_kept_and_read(store):
    assert await store.memo("jira|PINC1", None, T0) is None
    assert await store.memo("jira|PINC1", "OPS-7", T0) == "OPS-7"
    assert await store.memo("jira|PINC1", None, T0 + 60) == "OPS-7"
