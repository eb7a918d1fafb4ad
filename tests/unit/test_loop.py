"""The loop with PagerDuty through the pipeline, with a manual clock: incident events
(acknowledged, resolved by a person, reopened) and remediation before paging."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from proxy.clock import ManualClock
from proxy.ingest import alertmanager
from proxy.ingest.pagerduty import IncidentEvent
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline
from proxy.remediate import Call, Outcome
from proxy.rules import RuleSet, load_rules
from proxy.store.memory import MemoryStore
from tests.conftest import write_rules

RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname]
  group_wait: 30s
  group_interval: 1m
  repeat_interval: 1h
rules:
  - name: restart-web
    match: {alertname: WebDown}
    remediate:
      url: "https://rundeck.example.com/api/45/job/restart/run?host={{ labels.instance }}"
      headers: {X-Rundeck-Auth-Token: "${RUNDECK_TOKEN}"}
      body: '{"options": {"alerts": "{{ num_firing }}"}}'
      timeout: 10s
      wait: 5m
"""
TOKEN = "secret-rundeck-token-1234567890"


class Endpoint:
    """A remediation endpoint answering as told; remembers every call."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome, self.calls = outcome, []

    async def __call__(self, call: Call) -> Outcome:
        self.calls.append(call)
        return self.outcome


@pytest.fixture
def rules_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNDECK_TOKEN", TOKEN)
    return write_rules(tmp_path / "rules", RULES)


def make(rules_dir: Path, endpoint: Endpoint | None = None, store=None, clock=None) -> Pipeline:
    return Pipeline(RuleSet(load_rules([str(rules_dir)])), store or MemoryStore(),
                    clock or ManualClock(), Metrics(), caller=endpoint or Endpoint(Outcome("ok", 200)))


async def send(p: Pipeline, name: str, inst: str = "a", status: str = "firing") -> None:
    await p.accept(alertmanager.parse({"alerts": [{"status": status, "labels": {
        "alertname": name, "instance": inst}}]}))


async def run(p: Pipeline, seconds: float, every: float = 10.0) -> list[tuple[str, dict]]:
    clock = p.clock
    assert isinstance(clock, ManualClock)
    out: list[tuple[str, dict]] = []
    for _ in range(int(seconds / every)):
        clock.advance(every)
        await p.flush_due()
        await p.settle()
        for ev in await p.store.pending():
            out.append((ev.action, orjson.loads(ev.body)))
            await p.store.done(ev, 0, clock.now())
    return out


def incident(p: Pipeline, key: str, kind: str, n: int) -> IncidentEvent:
    return IncidentEvent(id=f"ev{n}", event_type=f"incident.{kind}", occurred_at=p.clock.now(),
                         incident_id="PGR0VU2", incident_key=key, status=kind, agent="User 123")


# -- PagerDuty's side -------------------------------------------------------------------
async def test_acknowledged_group_is_not_repeated_until_unacknowledged(rules_dir):
    p = make(rules_dir)
    await send(p, "Down")
    [(_, trig)] = await run(p, 30)
    assert await p.incident(incident(p, trig["dedup_key"], "acknowledged", 1)) == "applied"
    assert await run(p, 3 * 3600, every=60) == []  # no repeat for 3 h while acknowledged
    [g] = await p.store.groups()
    assert g.state.pd is not None and g.state.pd.status == "acknowledged" and g.state.pd.by == "User 123"
    assert await p.incident(incident(p, trig["dedup_key"], "unacknowledged", 2)) == "applied"
    [(action, body)] = await run(p, 3600, every=60)
    assert action == "trigger" and body["payload"]["custom_details"]["why"] == "repeat"


async def test_resolved_by_a_person_while_firing(rules_dir):
    p = make(rules_dir)
    await send(p, "Down", "a")
    [(_, trig)] = await run(p, 30)
    assert await p.incident(incident(p, trig["dedup_key"], "resolved", 1)) == "applied"
    await send(p, "Down", "a")  # the same alert, refreshed by its sender
    assert await run(p, 2 * 3600, every=60) == []  # not re-paged, not repeated
    await send(p, "Down", "b")  # a new alert: a new incident
    [(action, again)] = await run(p, 120)
    assert action == "trigger" and again["dedup_key"] == trig["dedup_key"]
    assert again["payload"]["custom_details"]["why"] == "first"


async def test_a_refire_after_a_person_resolved_pages_again(rules_dir):
    p = make(rules_dir)
    await send(p, "Down", "a")
    [(_, trig)] = await run(p, 30)
    await p.incident(incident(p, trig["dedup_key"], "resolved", 1))
    p.clock.advance(60)  # type: ignore[attr-defined]
    await send(p, "Down", "a", "resolved")
    await send(p, "Down", "a")  # it came back
    [(action, _)] = await run(p, 120)
    assert action == "trigger"


async def test_all_resolved_after_a_person_resolved_sends_nothing(rules_dir):
    p = make(rules_dir)
    await send(p, "Down", "a")
    [(_, trig)] = await run(p, 30)
    await p.incident(incident(p, trig["dedup_key"], "resolved", 1))
    await send(p, "Down", "a", "resolved")
    assert await run(p, 600) == [] and await p.store.groups() == []


async def test_reopened_repeats_again(rules_dir):
    p = make(rules_dir)
    await send(p, "Down", "a")
    [(_, trig)] = await run(p, 30)
    await p.incident(incident(p, trig["dedup_key"], "resolved", 1))
    p.clock.advance(60)  # type: ignore[attr-defined]
    assert await p.incident(incident(p, trig["dedup_key"], "reopened", 2)) == "applied"
    [(action, body)] = await run(p, 3600, every=60)
    assert action == "trigger" and body["payload"]["custom_details"]["why"] == "repeat"


async def test_verdicts(rules_dir):
    p = make(rules_dir)
    await send(p, "Down", "a")
    [(_, trig)] = await run(p, 30)
    key = trig["dedup_key"]
    assert await p.incident(incident(p, "f" * 32, "acknowledged", 1)) == "foreign"
    ack = incident(p, key, "acknowledged", 2)
    assert await p.incident(ack) == "applied"
    assert await p.incident(ack) == "duplicate"
    older = IncidentEvent("ev0", "incident.resolved", ack.occurred_at - 100, "P1", key, "resolved", "x")
    assert await p.incident(older) == "stale"
    other = IncidentEvent("ev9", "incident.priority_updated", ack.occurred_at, "P1", key, "triggered", "")
    assert await p.incident(other) == "ignored"
    [g] = await p.store.groups()
    assert g.state.pd is not None and g.state.pd.status == "acknowledged"


# -- remediation ----------------------------------------------------------------------------
async def test_remediation_that_fixes_it_pages_nobody(rules_dir):
    endpoint = Endpoint(Outcome("ok", 200, 0.1, "job 17 started"))
    p = make(rules_dir, endpoint)
    await send(p, "WebDown", "web1")
    assert await run(p, 30) == []
    [call] = endpoint.calls
    assert call.url == "https://rundeck.example.com/api/45/job/restart/run?host=web1"
    assert call.headers == {"X-Rundeck-Auth-Token": TOKEN} and call.body == '{"options": {"alerts": "1"}}'
    [g] = await p.store.groups()
    assert g.state.held == "remediation" and g.state.remediation is not None
    assert g.state.remediation.outcome == "ok"
    await send(p, "WebDown", "web1", "resolved")  # fixed within wait
    assert await run(p, 600) == [] and await p.store.groups() == []
    assert p.metrics.registry.get_sample_value("alert_proxy_alerts_suppressed_total",
                                               {"reason": "remediated"}) == 1
    assert len(endpoint.calls) == 1


@pytest.mark.parametrize("outcome,shown", [
    (Outcome("failed", 500, 0.2, "Internal Server Error"), "failed"),
    (Outcome("timeout", None, 10.0, "no answer within 10s"), "timeout"),
    (Outcome("error", None, 0.0, "ClientConnectorError: refused"), "error"),
])
async def test_a_failed_remediation_pages_at_once(rules_dir, outcome, shown):
    p = make(rules_dir, Endpoint(outcome))
    await send(p, "WebDown")
    events = await run(p, 40)  # group_wait 30 s, then the call fails: paged at once
    [(action, body)] = events
    d = body["payload"]["custom_details"]["remediation"]
    assert action == "trigger" and d["outcome"] == shown and d["answer"] == outcome.answer
    assert d["http_status"] == outcome.http_status


async def test_remediation_that_answers_2xx_but_does_not_fix_pages_after_wait(rules_dir):
    endpoint = Endpoint(Outcome("ok", 200, 0.1, "job 17 started"))
    p = make(rules_dir, endpoint)
    await send(p, "WebDown")
    assert await run(p, 320) == []  # 30 s + 5 min of wait, less a step
    [(action, body)] = await run(p, 20)
    d = body["payload"]["custom_details"]["remediation"]
    assert action == "trigger" and d["outcome"] == "not fixed" and d["answer"] == "job 17 started"
    assert len(endpoint.calls) == 1


async def test_a_restart_during_wait_neither_forgets_nor_calls_twice(rules_dir):
    store, clock = MemoryStore(), ManualClock()
    first = Endpoint(Outcome("ok", 200, 0.1, "started"))
    p = make(rules_dir, first, store, clock)
    await send(p, "WebDown")
    await run(p, 40)
    second = Endpoint(Outcome("ok", 200))
    p2 = make(rules_dir, second, store, clock)  # a new process on the same (durable) store
    [(action, body)] = await run(p2, 300)
    assert action == "trigger" and second.calls == [] and len(first.calls) == 1
    assert body["payload"]["custom_details"]["remediation"]["outcome"] == "not fixed"


async def test_remediation_secrets_never_show(rules_dir):
    leak = Outcome("failed", 401, 0.1, f"bad token {TOKEN[:4]}…{TOKEN[-4:]}")
    p = make(rules_dir, Endpoint(leak))
    await send(p, "WebDown")
    [(_, body)] = await run(p, 40)
    assert TOKEN not in orjson.dumps(body).decode()
