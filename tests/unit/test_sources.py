"""The `sources:` section: mappings compiled from the rules (file:line errors), built-ins
extended by the keys given beside them, and bodies mapped to alerts or refused naming
the field."""

from __future__ import annotations

import pytest

from proxy.errors import ConfigError, InputError
from proxy.ingest.sns import envelope, string_to_sign
from proxy.ingest.webhook import parse
from proxy.rules import load_rules
from tests.conftest import write_rules

CI = """
rules: [{name: all}]
sources:
  - name: ci
    items: data.checks
    when: "{{ item.kind != 'info' }}"
    require: [check]
    status: "{{ 'resolved' if item.ok else 'firing' }}"
    labels_from: tags
    labels: {alertname: "{{ item.check }}", empty: "{{ item.nothing }}"}
    annotations: {detail: "{{ item.detail }}"}
    summary: "{{ item.check }} failed {{ (item.count or 0) + 1 }} times"
    fingerprint: "{{ body.pipeline }}/{{ item.check }}"
    links: [{href: "{{ item.url }}", text: CI}]
"""


def _source(tmp_path, text: str, name: str = "ci"):
    return load_rules([write_rules(tmp_path, text)]).sources[name]


def test_a_mapping_of_our_own(tmp_path):
    m = _source(tmp_path, CI)
    body = {"pipeline": "web", "data": {"checks": [
        {"check": "lint", "ok": False, "tags": {"team": "web", "n": 3, "gone": None}, "count": 2,
         "url": "https://ci/1", "detail": None},
        {"check": "unit", "ok": True, "count": 0, "url": "ftp://no"},
        {"check": "note", "kind": "info"},
    ]}}
    lint, unit = parse(m, body)
    assert (lint.status, unit.status) == ("firing", "resolved")
    assert lint.labels == {"team": "web", "n": "3", "alertname": "lint"}  # empty labels left out
    assert lint.fingerprint == "wh:ci:web/lint" and lint.source == "webhook:ci"
    assert lint.summary == "lint failed 3 times" and lint.annotations == {}
    assert lint.links == [{"href": "https://ci/1", "text": "CI"}] and unit.links == []


@pytest.mark.parametrize("body,error", [
    ("text", "body must be a JSON object (webhook source 'ci')"),
    ({"data": {}}, "'data.checks' is missing (the list of alerts, sources 'ci': items)"),
    ({"data": {"checks": 3}}, "'data.checks' must be an array of alerts"),
    ({"data": {"checks": [1]}}, "'data.checks[0]' must be an object"),
    ({"data": {"checks": [{"ok": True}]}}, "'data.checks[0].check' is missing"),
    ({"data": {"checks": [{"check": "x", "tags": [{"name": 1}]}]}},
     "'data.checks[0].tags[0]' must be an object with a string name and value"),
    ({"data": {"checks": [{"check": "x", "count": "many"}]}},
     "'data.checks[0]': the mapping's summary template failed on it"),
])
def test_bad_bodies_name_the_field(tmp_path, body, error):
    m = _source(tmp_path, CI)
    with pytest.raises(InputError) as e:
        parse(m, body)
    assert any(x.startswith(error) for x in e.value.errors), e.value.errors


def test_builtin_extended_by_the_keys_beside_it(tmp_path):
    m = _source(tmp_path, """
rules: [{name: all}]
sources:
  - name: grafana
    builtin: grafana
    labels: {source: grafana}                       # added to the built-in's
    severity: "{{ item.labels.priority }}"          # replaces the built-in's
""", "grafana")
    [a] = parse(m, {"alerts": [{"status": "firing", "labels": {"alertname": "X", "priority": "P1"}}]})
    assert a.labels == {"alertname": "X", "priority": "P1", "source": "grafana"}
    assert a.severity == "P1" and m.builtin == "grafana"


def test_source_errors_carry_file_and_line(tmp_path):
    other = tmp_path / "b"
    write_rules(tmp_path / "a", "sources: [{name: ci, status: firing}]\n")
    write_rules(other, """
sources:
  - {name: ci, status: firing}
  - {name: x, status: firing, itemz: a}
  - {name: y, status: firing, items: "a..b"}
  - {name: z, builtin: cloudwatch-sns, sns: {topics: []}}
  - 7
""")
    with pytest.raises(ConfigError) as e:
        load_rules([str(tmp_path / "a"), str(other)])
    f, first = other / "rules.yml", tmp_path / "a" / "rules.yml"
    assert e.value.errors == [
        f"{f}:3: source 'ci': name already used at {first}:1",
        f"{f}:4: source 'x': unknown key 'itemz' (known: name, builtin, items, when, require, status, "
        "labels_from, labels, annotations_from, annotations, summary, severity, fingerprint, "
        "starts_at, links, images, sns)",
        f"{f}:5: source 'y': items: 'a..b' is not a path into the body (e.g. alerts, data.items)",
        f"{f}:6: source 'z': sns: topics: list the TopicArns to take (an SNS signature only proves "
        "that some AWS account's topic sent the message; * matches any part)",
        f"{f}:7: sources[4]: must be a mapping with a name",
    ]


def test_sns_string_to_sign_follows_the_documented_order():
    env = envelope({"Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": "hi\nthere",
                    "Timestamp": "2026-11-23T00:00:00.000Z", "SignatureVersion": "1", "Signature": "s",
                    "SigningCertURL": "u", "UnsubscribeURL": "x"}, "Notification")
    assert string_to_sign(env) == (b"Message\nhi\nthere\nMessageId\nm\nTimestamp\n"
                                   b"2026-11-23T00:00:00.000Z\nTopicArn\nt\nType\nNotification\n")
    with pytest.raises(InputError, match="does not match 'Type'"):
        envelope(env, "SubscriptionConfirmation")
