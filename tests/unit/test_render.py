"""PagerDuty bodies: the trigger's fields, links and images, and the size cap."""

from __future__ import annotations

import orjson

from proxy import render
from proxy.model import Alert, Group, GroupAlert
from proxy.rules.types import Rule
from tests.conftest import KEY


def group(*alerts: GroupAlert, **kw: object) -> Group:
    g = Group(key="k" * 64, rule="r", routing_key=KEY, key_name="PD", group_labels={"alertname": "X"},
              **kw)  # type: ignore[arg-type]
    for a in alerts:
        g.alerts[a.alert.fingerprint] = a
    return g


def ga(i: int, status: str = "firing", severity: str = "warning", **kw: object) -> GroupAlert:
    return GroupAlert(Alert(fingerprint=f"f{i}", status=status, labels={"alertname": "X", "instance": f"i{i}"},  # type: ignore[arg-type]
                            source="alertmanager", summary=f"s{i}", **kw), severity)  # type: ignore[arg-type]


def test_trigger_fields():
    g = group(ga(1, severity="warning"), ga(2, severity="critical"), ga(3, "resolved"))
    ev = render.trigger_event(g, Rule(name="r"), 100.0)
    body = orjson.loads(ev.body)
    assert ev.action == "trigger" and ev.severity == "critical" and ev.dedup_key == g.key
    assert body["routing_key"] == KEY and body["client"] == "alert-proxy"
    p = body["payload"]
    assert p["severity"] == "critical" and p["summary"] == "[FIRING:2] X"  # Alertmanager's subject
    assert p["custom_details"]["num_firing"] == 2 and p["custom_details"]["num_resolved"] == 1
    assert [a["status"] for a in p["custom_details"]["alerts"]] == ["firing", "firing", "resolved"]


def test_only_links_and_images_pagerduty_takes():
    a = ga(1, links=[{"href": "javascript:x"}, {"href": "https://ok", "text": "ok"}],
           images=[{"src": "http://insecure"}, {"src": "https://img"}])
    body = orjson.loads(render.trigger_event(group(a), Rule(name="r"), 0.0).body)
    assert body["links"] == [{"href": "https://ok", "text": "ok"}]
    assert body["images"] == [{"src": "https://img"}]


def test_events_v2_sender_keeps_its_client_unless_the_rule_sets_one():
    a = ga(1, client="Grafana", client_url="https://grafana/alert/1")
    body = orjson.loads(render.trigger_event(group(a), Rule(name="r"), 0.0).body)
    assert (body["client"], body["client_url"]) == ("Grafana", "https://grafana/alert/1")


def test_size_cap_halves_the_alerts_until_it_fits():
    alerts = [GroupAlert(Alert(fingerprint=f"f{i}", status="firing", labels={"i": str(i)},
                               source="alertmanager", annotations={"d": "x" * 5000}), "error")
              for i in range(400)]
    g = group(*alerts, overflow=7)
    raw = render.trigger_event(g, Rule(name="r"), 0.0).body
    assert len(raw) <= render.MAX_BODY_BYTES
    d = orjson.loads(raw)["payload"]["custom_details"]
    assert d["num_firing"] == 400
    assert d["truncated_alerts"] == 400 - len(d["alerts"]) + 7


def test_followup_and_change_bodies():
    ev = render.followup_event(KEY, "dk", "resolve", 5.0)
    assert orjson.loads(ev.body) == {"routing_key": KEY, "event_action": "resolve", "dedup_key": "dk"}
    assert ev.key_name == "0123…cdef"
    ch = render.change_event({"routing_key": KEY, "payload": {"summary": "deploy"}}, 5.0, 1)
    assert ch.action == "change" and ch.path == "/v2/change/enqueue"
