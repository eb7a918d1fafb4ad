"""One behaviour suite, run against every store: memory:// and a real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import orjson
import pytest

from proxy import correlate
from proxy.model import Flush, OutEvent
from proxy.store import Entry, Resolved, Store, from_url

KEY = "0123456789abcdef0123456789abcdef"
T0 = 1_700_000_000.0


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        s = from_url("memory://")
    else:
        server = request.getfixturevalue("redis_server")
        s = from_url(server.url, prefix=f"t-{uuid.uuid4().hex[:8]}")
    yield s
    await s.close()


def entry(group: str, fp: str, status: str = "firing", wait: float = 30.0) -> Entry:
    alert = {"fingerprint": fp, "status": status, "labels": {"alertname": group, "i": fp},
             "placed_severity": "error"}
    return Entry(group_key=group, meta={"rule": "r", "routing_key": KEY, "key_name": "PD",
                                        "group_labels": {"alertname": group}},
                 fingerprint=fp, alert_json=orjson.dumps(alert).decode(), status=status,
                 group_wait=wait, group_interval=300.0, resolve_wait=300.0, max_alerts=3)


def resolved(fp: str) -> Resolved:
    """A resolve that carries only the fingerprint, as an Events v2 resolve does."""
    return Resolved(fp, orjson.dumps({"fingerprint": fp, "status": "resolved", "labels": {}}).decode(),
                    full=False)


def ev(dk: str, action: str = "trigger", severity: str = "error", body: bytes = b"{}") -> OutEvent:
    return OutEvent(KEY, dk, action, severity, body, key_name="PD", enqueued_at=T0)  # type: ignore[arg-type]


async def test_record_opens_group_due_after_group_wait(store):
    await store.record([entry("g1", "a"), entry("g1", "b"), entry("g1", "a")], [], T0)
    assert await store.claim_due(T0 + 29, 30, 10) == []
    assert await store.claim_due(T0 + 30, 30, 10) == ["g1"]
    assert await store.claim_due(T0 + 31, 30, 10) == []  # leased
    g = await store.load("g1")
    assert g is not None and sorted(g.alerts) == ["a", "b"]
    assert g.rule == "r" and g.routing_key == KEY and g.group_labels == {"alertname": "g1"}
    assert g.opened_at == T0 and not g.triggered


async def test_lease_runs_out_and_group_is_claimed_again(store):
    await store.record([entry("g1", "a")], [], T0)
    assert await store.claim_due(T0 + 30, 30, 10) == ["g1"]
    assert await store.claim_due(T0 + 61, 30, 10) == ["g1"]  # the first claimer died


async def test_resolved_alert_for_unknown_group_is_ignored(store):
    await store.record([entry("g1", "a", "resolved")], [resolved("zz")], T0)
    assert await store.groups() == []


async def test_commit_checks_version_and_enqueues_atomically(store):
    await store.record([entry("g1", "a")], [], T0)
    await store.claim_due(T0 + 30, 30, 10)
    g = await store.load("g1")
    assert g is not None
    await store.record([entry("g1", "b")], [], T0 + 30.5)  # changes the group meanwhile
    g.triggered, g.due, g.last_flush_at = True, T0 + 3600, T0 + 30
    assert await store.commit(g, False, [ev("g1")]) is False
    assert await store.pending() == []
    g = await store.load("g1")
    assert g is not None and len(g.alerts) == 2
    g.triggered, g.last_trigger_at, g.last_flush_at, g.due = True, T0 + 31, T0 + 31, T0 + 3600
    assert await store.commit(g, False, [ev("g1")]) is True
    [p] = await store.pending()
    assert p.dedup_key == "g1" and p.action == "trigger"
    g2 = await store.load("g1")
    assert g2 is not None and g2.triggered and g2.last_trigger_at == T0 + 31


async def test_resolve_after_trigger_waits_group_interval(store):
    await store.record([entry("g1", "a")], [], T0)
    await store.claim_due(T0 + 30, 30, 10)
    g = await store.load("g1")
    assert g is not None
    correlate.apply(g, Flush(["trigger"], False, T0 + 30 + 14400), T0 + 30)
    assert await store.commit(g, False, [])
    await store.record([], [resolved("a")], T0 + 40)
    assert await store.claim_due(T0 + 329, 30, 10) == []
    assert await store.claim_due(T0 + 330, 30, 10) == ["g1"]
    g = await store.load("g1")
    assert g is not None and g.alerts["a"].status == "resolved"
    assert g.alerts["a"].labels == {"alertname": "g1", "i": "a"}  # kept from the firing alert
    assert await store.commit(g, True, [ev("g1", "resolve")])
    assert await store.groups() == [] and await store.groups_of("a") == []


async def test_max_alerts_counts_overflow(store):
    await store.record([entry("g1", str(i)) for i in range(5)], [], T0)
    g = await store.load("g1")
    assert g is not None and len(g.alerts) == 3 and g.overflow == 2


async def test_groups_of_fingerprint(store):
    await store.record([entry("g1", "a"), entry("g2", "a"), entry("g2", "b")], [], T0)
    assert sorted(g.key for g in await store.groups_of("a")) == ["g1", "g2"]
    assert [g.key for g in await store.groups_of("b")] == ["g2"]


async def test_outbox_order_per_dedup_key_and_priority(store):
    await store.enqueue([ev("info1", severity="info"), ev("crit", "trigger", "critical"),
                         ev("x", "trigger", "warning")])
    await store.enqueue([ev("x", "resolve")])
    order = []
    for _ in range(4):
        e = await store.take(KEY, T0, 60)
        assert e is not None
        order.append((e.dedup_key, e.action))
        await store.done(e, T0)
    # critical first; x's resolve never overtakes its trigger; info last
    assert order == [("crit", "trigger"), ("x", "trigger"), ("x", "resolve"), ("info1", "trigger")]
    assert await store.take(KEY, T0, 60) is None
    assert await store.outbox_keys() == []


async def test_pending_triggers_coalesce_into_the_newest(store):
    await store.enqueue([ev("d", body=b'{"n":1}')])
    await store.enqueue([ev("d", body=b'{"n":2}')])
    [p] = await store.pending()
    assert p.body == b'{"n":2}'
    e = await store.take(KEY, T0, 60)  # in flight: a newer trigger queues behind it
    await store.enqueue([ev("d", body=b'{"n":3}')])
    assert [x.body for x in await store.pending()] == [b'{"n":2}', b'{"n":3}']
    assert e is not None


async def test_leased_event_is_not_taken_twice_until_its_lease_ends(store):
    await store.enqueue([ev("d")])
    e = await store.take(KEY, T0, 30)
    assert e is not None
    assert await store.take(KEY, T0 + 1, 30) is None
    again = await store.take(KEY, T0 + 31, 30)  # the sender died: taken over
    assert again is not None and again.seq == e.seq


async def test_retry_backoff_then_dead_letter_and_requeue(store):
    await store.enqueue([ev("d"), ev("e")])
    e = await store.take(KEY, T0, 30)
    assert e is not None and e.dedup_key == "d"
    await store.retry(e, T0 + 10, "HTTP 500", count=True, now=T0)
    nxt = await store.take(KEY, T0 + 1, 30)
    assert nxt is not None and nxt.dedup_key == "e"  # d waits, e goes on
    await store.dead(nxt, "HTTP 400: invalid", T0 + 1)
    assert await store.take(KEY, T0 + 5, 30) is None
    back = await store.take(KEY, T0 + 10, 30)
    assert back is not None and back.dedup_key == "d" and back.attempts == 1
    await store.done(back, T0 + 10)
    [dead] = await store.dead_letters()
    assert dead.dedup_key == "e" and "HTTP 400" in dead.last_error
    assert await store.requeue_dead(None) == 1
    assert await store.dead_letters() == []
    again = await store.take(KEY, T0 + 11, 30)
    assert again is not None and again.dedup_key == "e"


async def test_token_bucket_never_exceeds_limit_in_window(store):
    rate, burst = 110 / 60, 10
    sent = []
    t = T0
    while t < T0 + 180:
        if await store.acquire(KEY, rate, burst, t) == 0.0:
            sent.append(t)
        t += 0.05
    for i, s in enumerate(sent):
        assert sum(1 for x in sent[i:] if x < s + 60) <= 120
    assert len(sent) >= 320  # and it does not starve: ~110/min after the burst


async def test_pause(store):
    assert await store.paused_until(KEY) == 0.0
    await store.pause(KEY, T0 + 100)
    await store.pause(KEY, T0 + 50)  # never shortens a pause
    assert await store.paused_until(KEY) == T0 + 100


async def test_replicas_on_one_redis_share_one_budget(redis_server):
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    a, b = from_url(redis_server.url, prefix=prefix), from_url(redis_server.url, prefix=prefix)
    try:
        granted = 0
        t = T0
        for i in range(400):  # 20 s of two replicas asking as fast as they can
            s = a if i % 2 else b
            if await s.acquire(KEY, 110 / 60, 10, t) == 0.0:
                granted += 1
            t += 0.05
        assert granted <= 10 + 20 * 110 / 60 + 1  # one bucket, not two
    finally:
        await a.close()
        await b.close()


async def test_inhibition_marks_follow_firing_sources(store):
    await store.record([], [], T0, [("m1", "src-a"), ("m1", "src-b"), ("m2", "src-a")])
    assert await store.marked(["m1", "m2", "m3"]) == {"m1": {"src-a", "src-b"}, "m2": {"src-a"},
                                                      "m3": set()}
    await store.record([], [resolved("src-a")], T0 + 1)
    assert await store.marked(["m1", "m2"]) == {"m1": {"src-b"}, "m2": set()}


async def test_stats(store):
    await store.record([entry("g1", "a"), entry("g2", "b")], [], T0)
    await store.enqueue([ev("d"), ev("e")])
    e = await store.take(KEY, T0, 30)
    assert e is not None
    await store.dead(e, "HTTP 400", T0)
    st = await store.stats()
    assert st.groups_open == 2 and st.dead == 1 and st.pending == [("PD", T0)]
