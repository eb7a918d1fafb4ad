"""Over loopback HTTP: each ingest path, the drop-in answers, and every malformed input."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import FIXTURES, KEY, wait_for
from tests.support.fakepd import FakePagerDuty


async def test_alertmanager_fixture_becomes_one_trigger_then_resolve(make_proxy, fake_pd):
    client = await make_proxy(fake_pd.url)
    firing = (FIXTURES / "webhook_firing.body").read_bytes()
    r = await client.post("/v1/alertmanager", data=firing, headers={"Content-Type": "application/json"})
    assert r.status == 200, await r.text()
    assert (await r.json())["alerts"] == 1
    await wait_for(lambda: len(fake_pd.accepted()) == 1)
    trig = fake_pd.accepted()[0].body
    assert trig["event_action"] == "trigger"
    assert trig["routing_key"] == KEY
    assert trig["payload"]["summary"] == "Disk at 99% on db1"
    assert trig["payload"]["severity"] == "critical"
    assert trig["payload"]["source"] == "db1:9100"
    assert trig["payload"]["custom_details"]["num_firing"] == 1
    resolved = (FIXTURES / "webhook_resolved.body").read_bytes()
    r = await client.post("/v1/alertmanager", data=resolved, headers={"Content-Type": "application/json"})
    assert r.status == 200
    await wait_for(lambda: len(fake_pd.accepted()) == 2)
    res = fake_pd.accepted()[1].body
    assert res == {"routing_key": KEY, "event_action": "resolve", "dedup_key": trig["dedup_key"]}
    assert fake_pd.violations == []


async def test_events_v2_drop_in_answers(make_proxy, fake_pd):
    client = await make_proxy(fake_pd.url)
    ev = {"routing_key": KEY, "event_action": "trigger", "dedup_key": "disk-db1",
          "payload": {"summary": "disk full", "source": "db1", "severity": "warning"},
          "details": {"shoutrrr": "extra fields are accepted"}}
    r = await client.post("/v2/enqueue", json=ev)
    assert r.status == 202
    assert await r.json() == {"status": "success", "message": "Event processed", "dedup_key": "disk-db1"}
    del ev["dedup_key"]
    r = await client.post("/v2/enqueue", json=ev)
    body = await r.json()
    assert r.status == 202 and len(body["dedup_key"]) == 32


@pytest.mark.parametrize("body,error", [
    ({"event_action": "trigger", "payload": {"summary": "s", "source": "s", "severity": "info"}},
     "'routing_key' is missing or blank"),
    ({"routing_key": "short", "event_action": "trigger",
      "payload": {"summary": "s", "source": "s", "severity": "info"}},
     "Length of 'routing_key' is incorrect (should be 32 characters)"),
    ({"routing_key": KEY, "event_action": "trigger", "payload": {"summary": "s", "severity": "info"}},
     "'payload.source' is missing or blank"),
    ({"routing_key": KEY, "event_action": "trigger", "payload": {"summary": " ", "source": "s",
                                                                 "severity": "info"}},
     "'payload.summary' is missing or blank"),
    ({"routing_key": KEY, "event_action": "trigger",
      "payload": {"summary": "x" * 1025, "source": "s", "severity": "info"}},
     "Length of 'payload.summary' is incorrect (should be at most 1024 characters)"),
    ({"routing_key": KEY, "event_action": "trigger", "payload": {"summary": "s", "source": "s",
                                                                 "severity": "bad"}},
     "'payload.severity' is invalid (must be one of critical, error, warning, info)"),
    ({"routing_key": KEY, "event_action": "explode"},
     "'event_action' is invalid (must be one of trigger, acknowledge, resolve)"),
    ({"routing_key": KEY, "event_action": "resolve"}, "'dedup_key' is missing or blank"),
    ({"routing_key": KEY, "event_action": "resolve", "dedup_key": "d" * 256},
     "Length of 'dedup_key' is incorrect (should be at most 255 characters)"),
    ({"routing_key": KEY, "event_action": "trigger", "payload": "nope"},
     "'payload' is missing or not an object"),
    ({"routing_key": KEY, "event_action": "trigger", "payload": {"summary": "s", "source": "s",
      "severity": "info", "timestamp": "yesterday"}},
     "'payload.timestamp' is invalid (should be an ISO 8601 date-time)"),
    ({"routing_key": 12, "event_action": "trigger"}, "'routing_key' is missing or blank"),
])
async def test_events_v2_invalid_event_answers_like_pagerduty(make_proxy, fake_pd, body, error):
    client = await make_proxy(fake_pd.url)
    r = await client.post("/v2/enqueue", json=body)
    assert r.status == 400
    data = await r.json()
    assert data["status"] == "invalid event"
    assert data["message"] == "Event object is invalid"
    assert error in data["errors"]


async def test_events_v2_not_json(make_proxy, fake_pd):
    client = await make_proxy(fake_pd.url)
    for raw in (b"{not json", b"[1, 2]", b"\"a string\""):
        r = await client.post("/v2/enqueue", data=raw, headers={"Content-Type": "application/json"})
        assert r.status == 400
        assert await r.json() == {"status": "Unrecognized object", "message":
                                  "Event object format is unrecognized", "errors": ["JSON parse error"]}


MALFORMED = [
    ("/v1/alertmanager", b"{oops", "application/json", 400, "not valid JSON"),
    ("/v1/alertmanager", b"[]", "application/json", 400, "must be a JSON object"),
    ("/v1/alertmanager", b'{"alerts": 3}', "application/json", 400, "'alerts' is missing or not an array"),
    ("/v1/alertmanager", b'{"alerts": [{"status": "burning", "labels": {}}]}', "application/json",
     400, "'alerts[0].status'"),
    ("/v1/alertmanager", b'{"alerts": [{"status": "firing", "labels": {"a": [1]}}]}',
     "application/json", 400, "'alerts[0].labels.a' must be a string"),
    ("/v1/alertmanager", b'{"alerts": [{"status": "firing", "labels": "x"}]}', "application/json",
     400, "'alerts[0].labels' must be an object"),
    ("/v1/alertmanager", b'{"alerts": [{"status": "firing"}]}', "application/json", 400,
     "'alerts[0].labels' is missing"),
    ("/v1/alertmanager", b'{"alerts": []}', "text/plain", 415, "Content-Type must be application/json"),
    ("/v1/alertmanager", b'{"alerts": []}', "application/x-www-form-urlencoded", 415, "Content-Type"),
    ("/v1/datadog", b'{"body": "x"}', "application/json", 400, "'title' is missing or blank"),
    ("/v1/datadog", b'{"title": "x", "tags": 5}', "application/json", 400, "'tags' must be"),
    ("/v1/datadog", b'{"title": "x", "transition": "Exploded"}', "application/json", 400,
     "not a Datadog alert transition"),
    ("/v1/datadog", b"nope", "application/json", 400, "not valid JSON"),
    ("/v1/datadog", b'{"title": "x", "alert_id": {"id": 1}}', "application/json", 400,
     "'alert_id' must be a string"),
    ("/v1/datadog", b'{"title": "x", "link": ["https://a"]}', "application/json", 400,
     "'link' must be a string"),
    ("/v2/change/enqueue", b'{"routing_key": "x"}', "application/json", 400, "'payload' is missing"),
    ("/v2/enqueue", b"{}", "text/plain", 415, "Content-Type must be application/json"),
    ("/v1/nowhere", b"{}", "application/json", 404, "Not Found"),
]


@pytest.mark.parametrize("path,body,ctype,status,needle", MALFORMED)
async def test_malformed_input_gets_4xx_naming_the_problem(make_proxy, fake_pd, path, body, ctype,
                                                           status, needle):
    client = await make_proxy(fake_pd.url)
    r = await client.post(path, data=body, headers={"Content-Type": ctype})
    assert r.status == status
    data = await r.json()
    assert any(needle in e for e in data["errors"]) or needle in data.get("message", ""), data


async def test_oversized_body_is_413(make_proxy, fake_pd):
    client = await make_proxy(fake_pd.url)
    big = orjson.dumps({"alerts": [{"status": "firing", "labels": {"a": "x" * 600_000}}]})
    r = await client.post("/v1/alertmanager", data=big, headers={"Content-Type": "application/json"})
    assert r.status == 413
    assert "larger than 512000 bytes" in (await r.json())["message"]


async def test_bearer_and_basic_auth_per_source(make_proxy, fake_pd):
    from proxy.auth import parse_auth

    client = await make_proxy(fake_pd.url, auth=parse_auth(
        ["alertmanager=bearer:s3cret", "datadog=basic:dd:pw"]))
    body = (FIXTURES / "webhook_firing.body").read_bytes()
    h = {"Content-Type": "application/json"}
    r = await client.post("/v1/alertmanager", data=body, headers=h)
    assert r.status == 401 and "credentials" in (await r.json())["message"]
    r = await client.post("/v1/alertmanager", data=body, headers={**h, "Authorization": "Bearer nope"})
    assert r.status == 401
    r = await client.post("/v1/alertmanager", data=body, headers={**h, "Authorization": "Bearer s3cret"})
    assert r.status == 200
    dd = orjson.dumps({"title": "[Triggered] CPU high"})
    r = await client.post("/v1/datadog", data=dd, headers={**h, "Authorization": "Basic ZGQ6cHc="})
    assert r.status == 200
    r = await client.post("/v1/datadog", data=dd, headers={**h, "Authorization": "Basic ZGQ6eHg="})
    assert r.status == 401


async def test_datadog_transitions_and_tags(make_proxy, fake_pd):
    client = await make_proxy(fake_pd.url)
    base = {"title": "[Triggered] High CPU on web", "alert_cycle_key": "cyc1", "alert_id": "42",
            "tags": "service:web,env:prod,team:core", "priority": "P1", "link": "https://app.datadoghq.com/x"}
    r = await client.post("/v1/datadog", json=base)
    assert r.status == 200
    await wait_for(lambda: len(fake_pd.accepted()) == 1)
    trig = fake_pd.accepted()[0].body
    assert trig["payload"]["severity"] == "critical"
    assert trig["payload"]["summary"] == "High CPU on web"
    assert trig["links"][0]["href"] == "https://app.datadoghq.com/x"
    groups = (await (await client.get("/api/v1/groups")).json())["groups"]
    assert groups[0]["alerts"][0]["labels"]["service"] == "web"
    r = await client.post("/v1/datadog", json={**base, "title": "[Recovered] High CPU on web"})
    assert r.status == 200
    await wait_for(lambda: len(fake_pd.accepted()) == 2)
    assert fake_pd.accepted()[1].action == "resolve"
    assert fake_pd.violations == []


def test_every_datadog_transition_is_mapped():
    from proxy.ingest import datadog

    for t in ("Triggered", "Re-Triggered", "Recovered", "Warn", "Re-Warn", "No Data",
              "Re-No Data", "Renotify"):
        [a] = datadog.parse({"title": "x", "transition": t})
        assert a.status == ("resolved" if t == "Recovered" else "firing"), t


async def test_health_ready_metrics(make_proxy, fake_pd):
    client = await make_proxy(fake_pd.url)
    assert (await client.get("/healthz")).status == 200
    r = await client.get("/readyz")
    assert r.status == 200 and (await r.json())["status"] == "ready"
    for path in ("/-/healthy", "/-/ready"):  # Alertmanager's probe paths, GET and HEAD
        assert (await client.get(path)).status == 200
        assert (await client.head(path)).status == 200
    await client.post("/v1/alertmanager", data=(FIXTURES / "webhook_firing.body").read_bytes(),
                      headers={"Content-Type": "application/json"})
    text = await (await client.get("/metrics")).text()
    assert 'alert_proxy_alerts_received_total{source="alertmanager"} 1.0' in text
    assert KEY not in text


async def test_change_events_pass_through(make_proxy, fake_pd: FakePagerDuty):
    client = await make_proxy(fake_pd.url)
    r = await client.post("/v2/change/enqueue", json={"routing_key": KEY, "payload": {
        "summary": "deployed v2", "source": "ci"}, "links": [{"href": "https://ci/1"}]})
    assert r.status == 202
    await wait_for(lambda: len(fake_pd.accepted("/v2/change/enqueue")) == 1)
    assert fake_pd.accepted("/v2/change/enqueue")[0].body["payload"]["summary"] == "deployed v2"
