"""The parsers, one golden input per source: what each field of a real payload becomes."""

from __future__ import annotations

import orjson
import pytest

from proxy.errors import InputError, NotJSON
from proxy.ingest import alertmanager, datadog, events_v2
from tests.conftest import FIXTURES, KEY


def test_alertmanager_golden_firing():
    [a] = alertmanager.parse(orjson.loads((FIXTURES / "webhook_firing.body").read_bytes()))
    assert a.fingerprint == "am:efb0c6c488e007da"
    assert a.status == "firing" and a.source == "alertmanager"
    assert a.labels == {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"}
    assert a.summary == "Disk at 99% on db1" and a.severity == "critical"
    assert a.starts_at == "2026-11-22T11:50:36Z" and a.ends_at == ""  # the zero time is "unset"
    assert a.links == [{"href": "http://prometheus:9090/graph?g0.expr=up", "text": "Source"}]


def test_alertmanager_golden_resolved_keeps_the_fingerprint():
    [a] = alertmanager.parse(orjson.loads((FIXTURES / "webhook_resolved.body").read_bytes()))
    assert a.fingerprint == "am:efb0c6c488e007da" and a.status == "resolved"


def test_alertmanager_without_fingerprint_hashes_the_labels():
    body = {"alerts": [{"status": "firing", "labels": {"b": "2", "a": "1"}}]}
    [a1] = alertmanager.parse(body)
    body["alerts"][0]["labels"] = {"a": "1", "b": "2"}
    [a2] = alertmanager.parse(body)
    assert a1.fingerprint == a2.fingerprint and a1.fingerprint.startswith("am:")


# Datadog's documented default webhook payload, with its variables filled in.
DATADOG_DEFAULT = {
    "body": "%%%\nCPU above 90% for 5 minutes\n%%%", "last_updated": "1763812236000",
    "event_type": "query_alert_monitor", "title": "[Triggered] CPU high on web-1",
    "date": "1763812236000", "org": {"id": "1234", "name": "Acme"}, "id": "7094425378374063530",
}


def test_datadog_golden_default_payload():
    [a] = datadog.parse(DATADOG_DEFAULT)
    assert a.status == "firing" and a.source == "datadog"
    assert a.labels == {"alertname": "CPU high on web-1", "transition": "Triggered"}
    assert a.summary == "CPU high on web-1"
    assert a.starts_at == "2025-11-22T11:50:36Z"
    assert a.custom_details == {"body": DATADOG_DEFAULT["body"], "org_id": "1234"}
    [r] = datadog.parse({**DATADOG_DEFAULT, "title": "[Recovered] CPU high on web-1"})
    assert r.status == "resolved" and r.fingerprint == a.fingerprint


def test_datadog_monitor_variables():
    [a] = datadog.parse({"title": "[Warn] Disk", "transition": "Warn", "alert_id": 77,
                         "alert_cycle_key": "c1", "priority": "P2", "tags": "service:db,env:prod",
                         "hostname": "db1", "link": "https://app.datadoghq.com/event/1",
                         "snapshot": "https://p.datadoghq.com/s.png"})
    assert a.status == "firing" and a.severity == "error"
    assert a.labels["service"] == "db" and a.labels["monitor_id"] == "77" and a.labels["host"] == "db1"
    assert a.links == [{"href": "https://app.datadoghq.com/event/1", "text": "Datadog"}]
    assert a.images == [{"src": "https://p.datadoghq.com/s.png", "alt": "snapshot"}]


def test_events_v2_golden_trigger_from_alertmanager():
    ev = events_v2.parse(orjson.loads((FIXTURES / "pagerduty_trigger.body").read_bytes()))
    assert ev.action == "trigger" and ev.routing_key == KEY
    a = ev.alert
    assert a is not None and a.source == "events_v2" and a.severity == "error"
    assert a.fingerprint == events_v2.fingerprint(KEY, ev.dedup_key)
    assert a.labels["source"] == "Alertmanager" and a.labels["num_firing"] == "1"
    assert a.client == "Alertmanager" and a.client_url == "http://vm:19093/#/alerts?receiver=pd"


def test_events_v2_golden_resolve():
    ev = events_v2.parse(orjson.loads((FIXTURES / "pagerduty_resolve.body").read_bytes()))
    assert ev.action == "resolve" and ev.alert is not None and ev.alert.status == "resolved"
    assert ev.alert.fingerprint == events_v2.fingerprint(KEY, ev.dedup_key)


@pytest.mark.parametrize("body", [[1], "x", 3, None])
def test_events_v2_not_an_object_is_unrecognized(body):
    with pytest.raises(NotJSON):
        events_v2.parse(body)


def test_every_problem_is_named_at_once():
    with pytest.raises(InputError) as e:
        alertmanager.parse({"alerts": [{"status": "x", "labels": {}},
                                       {"status": "firing", "labels": {"a": []}}]})
    assert e.value.errors == ["'alerts[0].status' must be \"firing\" or \"resolved\"",
                              "'alerts[1].labels.a' must be a string"]


def test_an_annotated_incident_event_is_about_the_incident_it_references():
    """incident.annotated carries a note (data.type incident_note), not the incident: it is
    read (PagerDuty drops a delivery answered 4xx, and disables the subscription after
    three), with the note for actions."""
    import orjson

    from proxy.ingest import pagerduty
    from tests.conftest import ROOT

    examples = ROOT / "tests" / "fixtures" / "pagerduty-webhooks-v3"
    env = orjson.loads((examples / "envelope_incident_priority_updated.json").read_bytes())
    env["event"].update(event_type="incident.annotated",
                        data=orjson.loads((examples / "data_incident_note.json").read_bytes()))
    ev = pagerduty.parse(orjson.dumps(env))
    assert ev is not None and ev.event_type == "incident.annotated" and ev.incident_id == "PGR0VU2"
    assert ev.incident_key is None and ev.status == "" and ev.agent == "Tenex Engineer"
    assert ev.data is not None and ev.data["content"] == "I sure am glad we are using PagerDuty!"


def test_an_alert_as_its_group_keeps_it_has_every_field_but_the_routing_key():
    """Alert.to_dict names its fields one by one (it runs for every alert): a field added
    to Alert and not to it would be lost when the alert is stored. Every field set comes
    back through to_dict/from_dict, empty ones are left out, the routing key (a secret)
    never."""
    import dataclasses

    from proxy.model import Alert

    values = {f.name: (["x"] if f.type.startswith("list") else {"k": "v"} if f.type.startswith(("dict", "Json"))
                       else "firing" if f.name == "status" else f"{f.name}-value")
              for f in dataclasses.fields(Alert)}
    full = Alert(**values)
    d = full.to_dict()
    assert "routing_key" not in d
    assert Alert.from_dict(dict(d)) == dataclasses.replace(full, routing_key=None)
    bare = Alert(fingerprint="f", status="firing", labels={"a": "b"}, source="s")
    assert bare.to_dict() == {"fingerprint": "f", "status": "firing", "labels": {"a": "b"}, "source": "s"}
