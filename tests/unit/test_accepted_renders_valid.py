"""Property: whatever a sender posts, a body the proxy accepts (2xx) becomes events that
PagerDuty takes. Generated bodies for every ingest path go through the path's own parser,
the pipeline and the renderer; every event that comes out is checked by the fake
PagerDuty's validator (tests/support/fakepd.py, the rules of FACTS.md). A body refused at
the door (InputError, a 4xx) is fine; an accepted one that PagerDuty would refuse is the
bug this hunts (a blank summary or source, a start time that is not ISO 8601, an empty
link address: each was answered 2xx, then refused by PagerDuty)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.clock import ManualClock
from proxy.errors import InputError
from proxy.ingest import alertmanager, datadog, events_v2, webhook
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline
from proxy.rules import RuleSet, load_rules
from proxy.store.memory import MemoryStore
from tests.conftest import KEY, write_rules
from tests.support.fakepd import validate_change, validate_event

RULES = f"""
defaults:
  routing_key: "{KEY}"
  group_by: [alertname, instance]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 1h
sources:
  - name: generic
    items: items
    status: "{{{{ 'resolved' if item.state == 'ok' else 'firing' }}}}"
    labels: {{alertname: "{{{{ item.name }}}}", instance: "{{{{ item.host }}}}", source: "{{{{ item.src }}}}"}}
    annotations: {{summary: "{{{{ item.text }}}}"}}
    summary: "{{{{ item.text }}}}"
    severity: "{{{{ item.level }}}}"
    starts_at: "{{{{ item.time }}}}"
    links: [{{href: "{{{{ item.url }}}}", text: "{{{{ item.text }}}}"}}]
    images: [{{src: "{{{{ item.img }}}}"}}]
"""

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Text as senders get it wrong: blank, whitespace, long, odd characters, near-miss times.
blank = st.sampled_from(["", " ", "   ", "\t", "\n", "\u00a0", "\u3000"])
times = st.sampled_from(["2026-11-22T10:00:00Z", "2026-11-22T10:00:00.123456789Z",
                         "2026-11-22 10:00:00+0000", "yesterday", "2026-13-40T99:00:00Z",
                         "0001-01-01T00:00:00Z", "1700000000", "", "   "])
urls = st.sampled_from(["", " ", "https://example.com/x", "http://a", "ftp://b", "javascript:x",
                        "https://", "//no-scheme"])
text = st.one_of(blank, st.text(max_size=40), st.text(min_size=1000, max_size=1100), times, urls)
word = st.one_of(blank, st.text(max_size=12))
labels = st.dictionaries(st.sampled_from(["alertname", "instance", "source", "severity", "job",
                                          "host", "service", "summary"]), text, max_size=6)
value = st.one_of(st.none(), st.booleans(), st.integers(), text)


def _am(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "alerts": alerts}


am_alert = st.fixed_dictionaries({"status": st.sampled_from(["firing", "resolved"]), "labels": labels},
                                 optional={"annotations": st.dictionaries(word, text, max_size=3),
                                           "startsAt": times, "endsAt": times, "generatorURL": urls,
                                           "fingerprint": word})
am_body = st.lists(am_alert, min_size=1, max_size=4).map(_am)
dd_body = st.fixed_dictionaries({"title": text}, optional={
    "body": text, "transition": st.sampled_from(["Triggered", "Recovered", "Warn", "No Data", "x"]),
    "alert_type": word, "priority": st.sampled_from(["P1", "P3", "p5", "", "x"]),
    "tags": st.one_of(text, st.just("service:web,host: ,team:")), "hostname": text, "date": value,
    "link": urls, "snapshot": urls, "alert_id": value, "alert_cycle_key": value,
    "scope": text, "org": st.fixed_dictionaries({"id": value})})
ev_payload = st.fixed_dictionaries({"summary": text, "source": text, "severity": st.one_of(
    st.sampled_from(["critical", "error", "warning", "info"]), word)}, optional={
    "timestamp": times, "component": text, "group": text, "class": text,
    "custom_details": st.dictionaries(word, value, max_size=4)})
link = st.fixed_dictionaries({"href": urls}, optional={"text": text})
image = st.fixed_dictionaries({"src": urls}, optional={"href": urls, "alt": text})
ev_body = st.fixed_dictionaries({
    "routing_key": st.sampled_from([KEY, KEY.upper(), "short", ""]),
    "event_action": st.sampled_from(["trigger", "trigger", "acknowledge", "resolve"]),
    "payload": ev_payload}, optional={
    "dedup_key": word, "links": st.lists(link, max_size=3), "images": st.lists(image, max_size=2),
    "client": text, "client_url": urls})
change_body = st.fixed_dictionaries({"routing_key": st.sampled_from([KEY, "x"]), "payload": st.fixed_dictionaries(
    {"summary": text}, optional={"source": text, "timestamp": times,
                                 "custom_details": st.dictionaries(word, value, max_size=3)})},
    optional={"links": st.lists(link, max_size=3)})
item = st.fixed_dictionaries({}, optional={
    "state": st.sampled_from(["ok", "bad", ""]), "name": text, "host": text, "src": text,
    "text": text, "level": st.one_of(word, st.sampled_from(["critical", "P2", "sev-1"])),
    "time": times, "url": urls, "img": urls})
generic_body = st.lists(item, min_size=1, max_size=4).map(lambda items: {"items": items})


def _pipeline(tmp_path: Path) -> Pipeline:
    rules = RuleSet(load_rules([str(write_rules(tmp_path / "rules", RULES))]))
    return Pipeline(rules, MemoryStore(), ManualClock(), Metrics())


async def _outbox_after(p: Pipeline) -> list[tuple[str, bytes]]:
    clock = p.clock
    assert isinstance(clock, ManualClock)
    for _ in range(3):  # the first trigger, then whatever follows it
        clock.advance(6)
        while await p.flush_due() or p.behind:
            pass
    return [(ev.path, ev.body) for ev in await p.store.pending()]


def _check(events: list[tuple[str, bytes]]) -> None:
    import orjson

    for path, raw in events:
        body = orjson.loads(raw)
        errors = validate_change(body) if path == "/v2/change/enqueue" else validate_event(body)
        assert errors == [], (errors, body)


def _run(tmp_path: Path, feed: Any) -> None:
    async def go() -> None:
        p = _pipeline(tmp_path)
        try:
            await feed(p)
        except InputError:
            return  # refused at the door, naming the field: fine
        _check(await _outbox_after(p))

    asyncio.run(go())


@SETTINGS
@given(body=am_body)
def test_alertmanager_bodies(tmp_path, body):
    _run(tmp_path, lambda p: p.accept(alertmanager.parse(body)))


@SETTINGS
@given(body=dd_body)
def test_datadog_bodies(tmp_path, body):
    _run(tmp_path, lambda p: p.accept(datadog.parse(body)))


@SETTINGS
@given(body=ev_body)
def test_events_v2_bodies(tmp_path, body):
    _run(tmp_path, lambda p: p.accept_event(events_v2.parse(body)))


@SETTINGS
@given(body=change_body)
def test_change_event_bodies(tmp_path, body):
    _run(tmp_path, lambda p: p.change(events_v2.parse_change(body), 0))


@SETTINGS
@given(body=generic_body)
def test_generic_source_bodies(tmp_path, body):
    async def feed(p: Pipeline) -> None:
        await p.accept(webhook.parse(p.rules.sources["generic"], body))

    _run(tmp_path, feed)
