"""The store's rules are written once in Python (proxy/store/semantics.py, called by the
memory and SQLite stores) and once in Lua (Redis). This model-based test holds the copies
to each other: hypothesis draws random sequences of record, claim, commit, enqueue, take,
done, retry, release, dead, requeue and clock steps, runs each step against memory://,
SQLite and a real redis-server, and requires the same observable answer from all three
at every step (the groups claimed with their alerts, versions and due times, whether a
commit went in, what a take gives or how long it says to wait, what is pending and dead,
the stats, the heartbeats' sends and states). Sequence numbers and budget stamps are each store's own and are not compared.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from proxy.model import Alert, Group, GroupAlert, GroupMeta, OutEvent
from proxy.state import GroupState
from proxy.store import Commit, Entry, Resolved, Store, Window, from_url

KEYS = ("0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210")
GROUPS = ("g1", "g2", "g3", "g4")
FPS = ("a", "b", "c")
WIN = Window(limit=3, seconds=60.0, reserve=1)  # small: the window fills within a test
DKS = ("d1", "d2", "d3", "d4", "d5", "d6")
T0 = 1_700_000_000.0
LEASE = 10.0


def _alert(fp: str, status: str) -> str:
    return GroupAlert(Alert(fingerprint=fp, status=status, labels={"alertname": fp},  # type: ignore[arg-type]
                            source="alertmanager"), "error").to_json()


def _group_view(g: Group) -> tuple[Any, ...]:
    """What a store says of a group, comparable across stores."""
    return (g.key, g.version, round(g.due, 6), g.triggered, g.grown, g.overflow,
            round(g.last_flush_at, 6), g.urgent, g.state.to_json(),
            tuple(sorted((fp, a.status, a.changes) for fp, a in g.alerts.items())))


def _event_view(ev: OutEvent) -> tuple[Any, ...]:
    return (ev.routing_key, ev.dedup_key, ev.action, ev.severity, ev.body, ev.attempts,
            round(ev.not_before, 6), ev.last_error)


class StoreMachine(RuleBasedStateMachine):
    redis_url = ""
    loop: asyncio.AbstractEventLoop

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.stores: dict[str, Store] = {
            "memory": from_url("memory://"),
            "sqlite": from_url(f"sqlite://{Path(self.tmp.name) / 'state.db'}"),
            "redis": from_url(self.redis_url, prefix=f"d-{uuid.uuid4().hex[:8]}"),
        }
        self.now = T0
        self.claimed: dict[str, dict[str, Group]] = {n: {} for n in self.stores}
        self.taken: dict[str, list[tuple[OutEvent, int]]] = {n: [] for n in self.stores}
        self.n = 0  # events made (their bodies are told apart by it)
        self.exploring = True  # run by hypothesis (not a named scenario)

    def teardown(self) -> None:
        for s in self.stores.values():
            self.loop.run_until_complete(s.close())
        self.tmp.cleanup()

    def each(self, fn: Any) -> dict[str, Any]:
        """fn(name, store) on every store, in turn; their answers."""
        return {name: self.loop.run_until_complete(fn(name, store)) for name, store in self.stores.items()}

    @staticmethod
    def same(answers: dict[str, Any], what: str) -> Any:
        first = answers["memory"]
        for name, a in answers.items():
            assert a == first, f"{what}: {name} answered {a!r}, memory {first!r}"
        return first

    # -- the clock ----------------------------------------------------------------------------
    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 5.0, 11.0, 20.0, 30.0, 61.0, 301.0]))
    def tick(self, seconds: float) -> None:
        self.now += seconds

    # -- windows ------------------------------------------------------------------------------
    @rule(group=st.sampled_from(GROUPS), fps=st.lists(st.sampled_from(FPS), min_size=1, max_size=3),
          status=st.sampled_from(["firing", "firing", "resolved"]), urgent=st.booleans(),
          full=st.booleans(), max_alerts=st.sampled_from([2, 10]))
    def record(self, group: str, fps: list[str], status: str, urgent: bool, full: bool,
               max_alerts: int) -> None:
        rk = KEYS[GROUPS.index(group) % 2]
        entries = [Entry(group, GroupMeta("r", rk, f"K{rk[0]}", {"g": group}), fp, _alert(fp, "firing"),
                         group_wait=30.0, group_interval=300.0, resolve_wait=60.0,
                         max_alerts=max_alerts, urgent=urgent) for fp in fps] if status == "firing" else []
        resolved = [Resolved(fp, _alert(fp, "resolved") if full else orjson.dumps(
            {"fingerprint": fp, "status": "resolved", "labels": {}}).decode(), full)
            for fp in fps] if status == "resolved" else []
        self.same(self.each(lambda _, s: s.record(entries, resolved, self.now)), "record")

    @rule(limit=st.sampled_from([1, 2, 10]), alerts=st.sampled_from([1, 2, 3, 4, 100]))
    def claim(self, limit: int, alerts: int = 100) -> None:
        async def go(name: str, s: Store) -> list[tuple[Any, ...]]:
            groups = await s.claim_due(self.now, lease=LEASE, limit=limit, alerts=alerts)
            for g in groups:
                self.claimed[name][g.key] = g
            return sorted(_group_view(g) for g in groups)
        self.same(self.each(go), "claim_due")

    @precondition(lambda self: bool(self.claimed["memory"]))
    @rule(data=st.data(), trigger=st.booleans(), delete=st.booleans(), later=st.sampled_from([60.0, 3600.0]))
    def commit(self, data: st.DataObject, trigger: bool, delete: bool, later: float) -> None:
        self._commit(data.draw(st.sampled_from(sorted(self.claimed["memory"]))), trigger, delete, later)

    @rule(trigger=st.booleans(), later=st.sampled_from([60.0, 3600.0]))
    def flush(self, trigger: bool, later: float) -> None:
        """A flusher's round in one step: claim what is due, commit every group claimed."""
        self.claim(10)
        for key in sorted(self.claimed["memory"]):
            self._commit(key, trigger, False, later)

    def _commit(self, key: str, trigger: bool, delete: bool, later: float) -> None:
        async def go(name: str, s: Store) -> list[bool]:
            g = self.claimed[name].pop(key)
            g.last_flush_at, g.due = self.now, self.now + later
            events = []
            if trigger:
                g.triggered, g.grown, g.last_trigger_at = True, False, self.now
                g.state = GroupState(why="first", paged=tuple(sorted(g.alerts)), first_page_at=self.now)
                events = [self._event(g.routing_key, g.key, "trigger", "error")]
            return await s.commit([Commit(g, delete, events)])
        self.n += 1
        self.same(self.each(go), "commit")

    @rule(group=st.sampled_from(GROUPS))
    def load(self, group: str) -> None:
        async def go(_: str, s: Store) -> Any:
            g = await s.load(group)
            return None if g is None else _group_view(g)[:2] + _group_view(g)[3:]  # (due: a lease)
        self.same(self.each(go), "load")

    # -- outbox -------------------------------------------------------------------------------
    def _event(self, rk: str, dk: str, action: str, severity: str) -> OutEvent:
        body = orjson.dumps({"routing_key": rk, "dedup_key": dk, "event_action": action, "n": self.n})
        return OutEvent(rk, dk, action, severity, body, key_name=f"K{rk[0]}", enqueued_at=self.now)  # type: ignore[arg-type]

    @rule(dks=st.lists(st.tuples(st.sampled_from(DKS),
                                 st.sampled_from(("trigger", "trigger", "resolve")),
                                 st.sampled_from(("critical", "error", "info"))), min_size=1, max_size=3),
          rk=st.sampled_from(KEYS))
    def enqueue(self, dks: list[tuple[str, str, str]], rk: str) -> None:
        self.n += 1
        self.same(self.each(lambda _, s: s.enqueue([self._event(rk, dk, a, sev) for dk, a, sev in dks])),
                  "enqueue")

    @rule(rk=st.sampled_from(KEYS))
    def take(self, rk: str) -> None:
        async def go(name: str, s: Store) -> Any:
            t = await s.take(rk, self.now, LEASE, WIN)
            if t.event is None:
                return ("wait", "inf" if math.isinf(t.wait) else round(t.wait, 6))
            self.taken[name].append((t.event, t.stamp))
            return ("event", _event_view(t.event))
        answer = self.same(self.each(go), "take")
        if self.exploring:  # (hypothesis's statistics: how often a take waited)
            event(f"take: {answer[0]}" + (f" {answer[1] if answer[1] == 'inf' else 'for a while'}"
                                            if answer[0] == "wait" else ""))

    @precondition(lambda self: bool(self.taken["memory"]))
    @rule(data=st.data(), how=st.sampled_from(["done", "retry", "retry_free", "release", "dead"]),
          delay=st.sampled_from([0.0, 2.0, 100.0]))
    def answer(self, data: st.DataObject, how: str, delay: float) -> None:
        self.answer_at(data.draw(st.integers(0, len(self.taken["memory"]) - 1)), how, delay)

    def answer_at(self, i: int, how: str, delay: float) -> None:
        async def go(name: str, s: Store) -> None:
            ev, stamp = self.taken[name].pop(i)
            if how == "done":
                await s.done(ev, stamp, self.now)
            elif how.startswith("retry"):
                await s.retry(ev, stamp, self.now + delay, "HTTP 500", how == "retry", self.now)
            elif how == "release":
                await s.release(ev, stamp, self.now)
            else:
                await s.dead(ev, stamp, "HTTP 400", self.now)
        self.each(go)

    @rule(rk=st.sampled_from(KEYS), until=st.sampled_from([5.0, 120.0]))
    def pause(self, rk: str, until: float) -> None:
        self.each(lambda _, s: s.pause(rk, self.now + until))

    @rule()
    def requeue(self) -> None:
        self.same(self.each(lambda _, s: s.requeue_dead(None)), "requeue_dead")

    # -- heartbeats ---------------------------------------------------------------------------
    @rule(name=st.sampled_from(["h1", "h2"]), kind=st.sampled_from(["seen", "check", "check"]),
          limit=st.sampled_from([5.0, 60.0]))
    def beat(self, name: str, kind: str, limit: float) -> None:
        self.same(self.each(lambda _, s: s.heartbeat(name, kind, self.now, limit)), "heartbeat")
        self.same(self.each(lambda _, s: s.heartbeats()), "heartbeats")

    @invariant()
    def the_same_outbox(self) -> None:
        async def go(_: str, s: Store) -> Any:
            pending = sorted(_event_view(e) for e in await s.pending())
            dead = sorted(_event_view(e) for e in await s.dead_letters())
            stats = await s.stats(self.now, WIN)
            keys = {k: (v.depth, round(v.oldest_enqueued_at, 6), v.sent_in_window) for k, v in stats.keys.items()}
            return pending, dead, stats.groups_open, stats.dead, keys
        self.same(self.each(go), "outbox")


def test_memory_sqlite_and_redis_answer_alike(redis_server) -> None:
    StoreMachine.redis_url = redis_server.url
    StoreMachine.loop = asyncio.new_event_loop()
    try:
        run_state_machine_as_test(StoreMachine, settings=settings(
            max_examples=60, stateful_step_count=50, deadline=None, derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    finally:
        StoreMachine.loop.close()


def _scenario(redis_server: Any, steps: Any) -> None:
    StoreMachine.redis_url = redis_server.url
    StoreMachine.loop = asyncio.new_event_loop()
    m = StoreMachine()
    m.exploring = False
    try:
        steps(m)
        m.the_same_outbox()
    finally:
        m.teardown()
        StoreMachine.loop.close()


def _resolve_after_a_page(m: StoreMachine) -> None:
    m.record(group="g1", fps=["a", "b"], status="firing", urgent=False, full=True, max_alerts=10)
    m.tick(30.0)
    m.flush(trigger=True, later=3600.0)
    m.record(group="g1", fps=["a"], status="resolved", urgent=False, full=True, max_alerts=10)
    m.tick(30.0)
    m.claim(10)  # not yet: resolve_wait is 60 s
    m.tick(31.0)
    m.claim(10)  # due again resolve_wait after the flush (not group_interval)


def _the_budget_keeps_a_place_for_critical(m: StoreMachine) -> None:
    m.enqueue(dks=[("d1", "trigger", "error"), ("d2", "trigger", "info"), ("d3", "trigger", "error")], rk=KEYS[0])
    m.take(KEYS[0])
    m.take(KEYS[0])
    m.take(KEYS[0])  # limit 3, reserve 1: waits
    m.enqueue(dks=[("d4", "trigger", "critical")], rk=KEYS[0])
    m.take(KEYS[0])  # a critical trigger may use the reserve
    m.take(KEYS[0])  # and now nothing may go


def _a_late_answer_and_a_failed_commit(m: StoreMachine) -> None:
    m.record(group="g2", fps=["a"], status="firing", urgent=True, full=True, max_alerts=10)
    m.tick(30.0)
    m.claim(10)
    m.record(group="g2", fps=["b"], status="firing", urgent=True, full=True, max_alerts=10)
    m._commit("g2", True, False, 60.0)  # the group changed: it did not go in, the lease holds
    m.claim(10)
    m.enqueue(dks=[("d1", "trigger", "error"), ("d2", "trigger", "error")], rk=KEYS[0])
    m.take(KEYS[0])
    m.tick(61.0)
    m.take(KEYS[0])
    m.answer_at(0, "release", 0.0)  # the first send's stamp left the window already


def _a_heartbeat_pages_once_and_resolves(m: StoreMachine) -> None:
    m.beat("h1", "check", 5.0)  # never seen: counted from now
    m.tick(1.0)
    m.beat("h1", "check", 5.0)
    m.tick(4.0)
    m.beat("h1", "check", 5.0)  # silent for exactly the limit: it pages
    m.beat("h1", "check", 5.0)  # once
    m.beat("h1", "seen", 5.0)  # back: its resolve
    m.beat("h1", "seen", 5.0)


@pytest.mark.parametrize("steps", [_resolve_after_a_page, _the_budget_keeps_a_place_for_critical,
                                   _a_late_answer_and_a_failed_commit,
                                   _a_heartbeat_pages_once_and_resolves])
def test_named_scenarios_answer_alike(redis_server: Any, steps: Any) -> None:
    """Sequences the random search may take long to find, each a rule one store once got
    wrong or could: every step's answer is compared as in the random runs."""
    _scenario(redis_server, steps)
