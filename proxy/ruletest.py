"""`alert-proxy test`: rule unit tests, in the spirit of `promtool test rules`.

A test file (YAML) names rule files, then tests: input alerts at given times (any source
format) and the Events v2 calls expected out, in order. Time is simulated: a test of
hours runs in milliseconds.

    rule_files: [../rules/]           # relative to the test file
    env: {PD_ROUTING_KEY: 0123...}    # optional: variables the rules read
    tests:
      - name: database alerts page once per cluster
        interval: 1s                  # simulation step (default 1s)
        until: 10m                    # how long to simulate (default: last input + 1h)
        input:
          - at: 0s
            alerts:                   # shorthand: Alertmanager alerts (status: firing)
              - labels: {alertname: DatabaseDown, cluster: eu1, service: db}
          - at: 5s
            alertmanager: {...}       # or datadog: {...}, or events_v2: {...}
          - at: 9s                    # or a body for a sources: entry (an SNS source:
            webhook: {source: grafana, body: {...}}   # its Message, already verified)
        expect:                       # each a subset of the event body, in order
          - at: 45s                   # optional: when it went out
            event_action: trigger
            payload: {severity: critical}
      - name: silenced during the rollout
        silences:                     # Alertmanager's matchers, from/until test time
          - {matchers: 'alertname="DiskFull"', from: 0s, until: 30m}
        input:
          - at: 0s
            heartbeat: nightly-backup # an arrival of a heartbeat (heartbeats: in the rules)
        ...
      - name: a P1 goes to Slack and Jira
        input:
          - at: 0s
            alerts: [{labels: {alertname: CheckoutDown, service: checkout}}]
          - at: 2m                    # a PagerDuty incident event (as its webhook says):
            incident: {event: incident.triggered, service: Checkout, priority: P1, urgency: high,
                       title: "Checkout down", of_page: true}   # of_page: the last page's incident
        actions: [slack-oncall, jira-ops]   # the actions the incident events made, in order
      - name: a restart fixes it, nobody is paged
        remediation: {status: 200, body: restarted}   # what the `remediate:` endpoint
        input: [...]                                   # answers (or error: timeout|refused)
        expect: []
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from proxy.actions import Actions
from proxy.clock import ManualClock
from proxy.durations import parse_duration
from proxy.errors import ConfigError, InputError
from proxy.ingest import alertmanager, datadog, events_v2, webhook
from proxy.ingest.pagerduty import IncidentEvent
from proxy.jsontypes import JsonObject
from proxy.metrics import Metrics
from proxy.pipeline import Pipeline
from proxy.remediate import Call, Caller, Outcome
from proxy.rules import RuleSet, load_rules
from proxy.rules.actions import ACTION_EVENTS
from proxy.rules.matchers import parse_matchers
from proxy.rules.templates import RENDER_ERRORS
from proxy.rules.yamlfile import LDict, LList, load_yaml
from proxy.silences import iso, matcher_api
from proxy.store.memory import MemoryStore

__all__ = ["run_file", "run_files"]

_SOURCES = ("alerts", "alertmanager", "datadog", "events_v2", "webhook", "heartbeat", "incident")
_TEST_KEYS = ("name", "interval", "until", "input", "expect", "remediation", "silences", "actions")
_INCIDENT_KEYS = ("event", "service", "priority", "urgency", "title", "status", "of_page", "by")


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _subset(expected: Any, actual: Any, path: str) -> list[str]:
    """Where `actual` departs from `expected` (dicts: keys given; lists: item by item)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected a mapping, got {orjson.dumps(actual).decode()}"]
        out = []
        for k, v in expected.items():
            if k not in actual:
                out.append(f"{path}.{k}: expected {orjson.dumps(v).decode()}, missing")
            else:
                out += _subset(v, actual[k], f"{path}.{k}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {orjson.dumps(expected).decode()}, got {orjson.dumps(actual).decode()}"]
        return [e for i, x in enumerate(expected) for e in _subset(x, actual[i], f"{path}[{i}]")]
    if expected != actual and str(expected) != str(actual):
        return [f"{path}: expected {orjson.dumps(expected).decode()}, got {orjson.dumps(actual).decode()}"]
    return []


def _parse_input(step: LDict, where: str) -> tuple[str, Any]:
    given = [s for s in _SOURCES if s in step]
    if len(given) != 1:
        raise ConfigError([f"{where}: an input step needs exactly one of {', '.join(_SOURCES)}"])
    return given[0], step[given[0]]


def _incident_event(body: Any, n: int, now: float, last_page: str | None) -> IncidentEvent:
    """A rule test's `incident:` step as the webhook would carry it."""
    if not isinstance(body, dict) or body.get("event") not in ACTION_EVENTS or not set(body) <= set(_INCIDENT_KEYS):
        raise InputError([f"incident: a mapping with event (one of {', '.join(ACTION_EVENTS)}) and "
                          f"optionally {', '.join(_INCIDENT_KEYS[1:])}"])
    if body.get("of_page") and last_page is None:
        raise InputError(["incident: of_page, but no page was sent before it"])
    key = last_page if body.get("of_page") else None
    status = body.get("status") or {"incident.acknowledged": "acknowledged",
                                     "incident.resolved": "resolved"}.get(body["event"], "triggered")
    inc_id = f"PTEST{n:03d}"
    data = {"id": inc_id, "type": "incident", "number": n, "status": status, "incident_key": key,
            "title": str(body.get("title", "")), "urgency": str(body.get("urgency", "high")),
            "service": {"summary": str(body.get("service", ""))},
            "priority": {"summary": str(body["priority"])} if body.get("priority") else None}
    return IncidentEvent(id=f"test-event-{n}", event_type=body["event"], occurred_at=now, incident_id=inc_id,
                         incident_key=key, status=status, agent=str(body.get("by", "")), data=data)


async def _feed(pipeline: Pipeline, kind: str, body: Any) -> None:
    if kind == "alerts":
        body = {"alerts": [{"status": "firing", **a} for a in body]}
        kind = "alertmanager"
    if kind == "heartbeat":
        hb = pipeline.rules.heartbeats.get(str(body))
        if hb is None:
            raise InputError([f"no heartbeat is named {body!r} in the rules"])
        await pipeline.heartbeats.seen(hb, pipeline.clock.now())
    elif kind == "webhook":
        if not isinstance(body, dict) or set(body) != {"source", "body"}:
            raise InputError(["webhook: a mapping with source (a sources: name) and body"])
        mapping = pipeline.rules.sources.get(str(body["source"]))
        if mapping is None:
            raise InputError([f"webhook: no source is named {body['source']!r} in the rules"])
        await pipeline.accept(webhook.parse(mapping, body["body"], {}))
    elif kind == "alertmanager":
        await pipeline.accept(alertmanager.parse(body))
    elif kind == "datadog":
        await pipeline.accept(datadog.parse(body))
    else:
        await pipeline.accept_event(events_v2.parse(body))


def _fake_endpoint(spec: Any, where: str) -> tuple[Caller, list[Call]]:
    """A remediation endpoint that answers as the test says, and the calls it got."""
    spec = spec or {"status": 200, "body": "ok"}
    if not isinstance(spec, dict) or not set(spec) <= {"status", "body", "error"}:
        raise ConfigError([f"{where}: remediation: a mapping with status and body, or error: "
                           "timeout|refused"])
    calls: list[Call] = []

    async def answer(call: Call) -> Outcome:
        calls.append(call)
        if spec.get("error") == "timeout":
            return Outcome("timeout", None, call.timeout, f"no answer within {call.timeout:g}s")
        if spec.get("error") == "refused":
            return Outcome("error", None, 0.0, "ClientConnectorError: connection refused")
        status = int(spec.get("status", 200))
        return Outcome("ok" if 200 <= status < 300 else "failed", status, 0.0,
                       str(spec.get("body", ""))[:200])

    return answer, calls


async def _simulate(path: Path, rule_files: list[str], test: LDict, where: str,
                    made: list[str]) -> list[tuple[float, JsonObject]]:
    """The events sent, at their test times; `made` gets the actions incident events made."""
    clock = ManualClock(start=1_800_000_000.0)
    t0 = clock.now()
    caller, _ = _fake_endpoint(test.get("remediation"), where)
    pipeline = Pipeline(RuleSet(load_rules(rule_files)), MemoryStore(), clock, Metrics(), caller=caller)
    actions = Actions(pipeline.store, lambda: pipeline.rules, clock, Metrics())
    await _silences(pipeline, test.get("silences"), t0, where)
    inputs = test.get("input") or LList()
    steps: list[tuple[float, str, Any, str]] = []
    for i, step in enumerate(inputs):
        sw = f"{path}:{inputs.lines[i]}"
        if not isinstance(step, LDict):
            raise ConfigError([f"{sw}: an input step is a mapping with 'at' and a source"])
        try:
            at = parse_duration(step.get("at", "0s"))
        except ValueError as e:
            raise ConfigError([f"{sw}: at: {e}"]) from None
        kind, body = _parse_input(step, sw)
        steps.append((at, kind, body, sw))
    steps.sort(key=lambda s: s[0])
    try:
        interval = parse_duration(test.get("interval", "1s"))
        until = parse_duration(test["until"]) if "until" in test else \
            (steps[-1][0] if steps else 0.0) + 3600.0
    except ValueError as e:
        raise ConfigError([f"{where}: {e}"]) from None
    if interval <= 0:
        raise ConfigError([f"{where}: interval must be longer than 0s"])
    out: list[tuple[float, JsonObject]] = []
    t, n_events = 0.0, 0
    while t <= until + 1e-9:
        clock.t = t0 + t
        while steps and steps[0][0] <= t + 1e-9:
            _, kind, body, sw = steps.pop(0)
            try:
                if kind == "incident":
                    pages = [b["dedup_key"] for _, b in out if b.get("event_action") == "trigger"]
                    n_events += 1
                    inc = _incident_event(body, n_events, clock.now(), pages[-1] if pages else None)
                    made += await actions.queue(inc)
                    await pipeline.incident(inc)  # (an ack or a resolve holds pages, as in serve)
                else:
                    await _feed(pipeline, kind, body)
            except InputError as e:
                raise ConfigError([f"{sw}: {kind}: {m}" for m in e.errors]) from None
        await pipeline.heartbeats.check()
        await pipeline.flush_due()
        await pipeline.settle()
        for ev in await pipeline.store.pending():
            out.append((t, orjson.loads(ev.body)))
            await pipeline.store.done(ev, 0, clock.now())
        t += interval
    return out


async def _silences(pipeline: Pipeline, given: Any, t0: float, where: str) -> None:
    """A test's silences, made as amtool would make them (from/until: test time)."""
    for i, s in enumerate(given or []):
        if not isinstance(s, dict) or "matchers" not in s or "until" not in s:
            raise ConfigError([f"{where}: silences[{i}]: a mapping with matchers, until (and from)"])
        try:
            matchers = parse_matchers(str(s["matchers"]))
            start, end = parse_duration(s.get("from", "0s")), parse_duration(s["until"])
            await pipeline.silences.post({
                "matchers": [matcher_api(m) for m in matchers], "startsAt": iso(t0 + start),
                "endsAt": iso(t0 + end), "createdBy": "alert-proxy test", "comment": "rule test"},
                "alert-proxy test")
        except (ValueError, InputError) as e:
            detail = "; ".join(e.errors) if isinstance(e, InputError) else str(e)
            raise ConfigError([f"{where}: silences[{i}]: {detail}"]) from None


def run_file(path: Path) -> tuple[int, int, list[str]]:
    """(passed, failed, report lines) for one test file."""
    doc = load_yaml(path)
    if not isinstance(doc, LDict) or not isinstance(doc.get("tests"), LList):
        raise ConfigError([f"{path}:1: a rule test file has 'rule_files' and 'tests'"])
    for key in doc:
        if key not in ("rule_files", "env", "tests"):
            raise ConfigError([f"{path}:{doc.lines[key]}: unknown key {key!r} (known: rule_files, env, tests)"])
    files = doc.get("rule_files") or []
    rule_files = [str((path.parent / f).resolve()) for f in files]
    env = {str(k): str(v) for k, v in (doc.get("env") or {}).items()}
    passed, failed, report = 0, 0, []
    with _env(env):
        for i, test in enumerate(doc["tests"]):
            where = f"{path}:{doc['tests'].lines[i]}"
            if not isinstance(test, LDict):
                raise ConfigError([f"{where}: a test is a mapping"])
            name = test.get("name", f"test {i + 1}")
            unknown = set(test) - set(_TEST_KEYS)
            if unknown:
                raise ConfigError([f"{where}: unknown key {min(unknown)!r} (known: "
                                   f"{', '.join(_TEST_KEYS)})"])
            RENDER_ERRORS.clear()
            made: list[str] = []
            got = asyncio.run(_simulate(path, rule_files, test, where, made))
            expect = test.get("expect") or []
            problems = [f"template error: {e}" for e in RENDER_ERRORS]
            if "actions" in test and list(test["actions"] or []) != made:
                problems.append(f"actions: expected {list(test['actions'] or [])}, made {made}")
            for j, exp in enumerate(expect):
                if j >= len(got):
                    problems.append(f"event {j + 1}: expected {orjson.dumps(exp).decode()}, but only "
                                    f"{len(got)} event(s) were sent")
                    continue
                exp = dict(exp)
                at = exp.pop("at", None)
                if at is not None and abs(parse_duration(at) - got[j][0]) > 1e-6:
                    problems.append(f"event {j + 1}: expected at {at}, sent at {got[j][0]:g}s")
                problems += [f"event {j + 1}: {p}" for p in _subset(exp, got[j][1], "")]
            if len(got) > len(expect):
                problems.append(f"{len(got) - len(expect)} more event(s) sent than expected")
            if problems:
                failed += 1
                report.append(f"FAIL {where}: {name}")
                report += [f"  {p}" for p in problems]
                report.append("  events sent:")
                for t, body in got:
                    shown = {k: v for k, v in body.items() if k != "routing_key"}
                    report.append(f"    at {t:g}s: {orjson.dumps(shown).decode()[:400]}")
            else:
                passed += 1
                report.append(f"ok   {where}: {name}")
    return passed, failed, report


def run_files(files: list[str]) -> int:
    passed = failed = 0
    paths: list[Path] = []
    for f in files:
        p = Path(f)
        paths += sorted(p.glob("*.test.y*ml")) if p.is_dir() else [p]
    if not paths:
        raise ConfigError([f"{', '.join(files)}:0: no rule test files (*.test.yml) found"])
    for p in paths:
        ok, bad, report = run_file(p)
        passed, failed = passed + ok, failed + bad
        print("\n".join(report))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0
