"""Matchers (Alertmanager's syntax) and rule placement: first match wins, `continue`,
drop, routing keys, severities, group identity."""

from __future__ import annotations

import pytest

from proxy.model import Alert
from proxy.rules import RuleSet, load_rules
from proxy.rules.engine import Placement, group_dedup_key, own_identity_key
from proxy.rules.matchers import matchers_from_mapping, matches_all, parse_matcher
from tests.conftest import KEY, KEY2, write_rules


@pytest.mark.parametrize("text,labels,hit", [
    ('severity="critical"', {"severity": "critical"}, True),
    ('severity="critical"', {"severity": "warning"}, False),
    ('env!="dev"', {}, True),  # a missing label is the empty string
    ('env=~"prod|staging"', {"env": "prod"}, True),
    ('env=~"prod"', {"env": "production"}, False),  # anchored, as in Alertmanager
    ('env!~"dev.*"', {"env": "dev-1"}, False),
    ("team=db", {"team": "db"}, True),  # unquoted values
    ('msg="a \\"quoted\\" word"', {"msg": 'a "quoted" word'}, True),
])
def test_matcher(text, labels, hit):
    assert parse_matcher(text).matches(labels) is hit


@pytest.mark.parametrize("bad", ["severity critical", 'a=~"x[', 'a="unterminated'])
def test_bad_matcher(bad):
    with pytest.raises(ValueError):
        parse_matcher(bad)


def test_mapping_matchers():
    ms = matchers_from_mapping({"alertname": ["A", "B.c"], "env": "prod"})
    assert matches_all(ms, {"alertname": "B.c", "env": "prod"})
    assert not matches_all(ms, {"alertname": "Bxc", "env": "prod"})  # values are literal


RULES = f"""
defaults:
  routing_key: ${{PD_ROUTING_KEY}}
  group_by: [alertname]
rules:
  - name: drop-dev
    match: ['env="dev"']
    drop: true
  - name: db
    match: {{team: db}}
    group_by: [cluster]
    severity: critical
    routing_key: {KEY2}
    continue: true
  - name: sev-map
    match: {{team: db}}
    severity_map: {{urgent: critical}}
"""


@pytest.fixture
def rules(tmp_path):
    return RuleSet(load_rules([str(write_rules(tmp_path, RULES))]))


def am(**labels: str) -> Alert:
    return Alert(fingerprint="f", status="firing", labels=labels, source="alertmanager",
                 severity=labels.get("severity"))


def test_drop(rules):
    assert rules.place(am(alertname="X", env="dev")) == ([], "dropped")


def test_continue_places_in_every_matching_rule(rules):
    placed, reason = rules.place(am(alertname="X", team="db", cluster="c1", severity="urgent"))
    assert reason is None
    assert [(p.rule.name, p.routing_key, p.key_name, p.severity, p.group_labels) for p in placed] == [
        ("db", KEY2, "fedc…3210", "critical", {"cluster": "c1"}),  # a literal key shows masked
        ("sev-map", KEY, "PD_ROUTING_KEY", "critical", {"alertname": "X"}),
    ]


def test_defaults_and_builtin_severity_map(rules):
    [p], _ = rules.place(am(alertname="X", severity="P2"))
    assert p.rule.name == "defaults" and p.severity == "error"
    [p], _ = rules.place(am(alertname="X", severity="whatever"))
    assert p.severity == "error"


def test_group_identity_is_a_stable_hash(rules):
    [p], _ = rules.place(am(alertname="X", instance="a"))
    [q], _ = rules.place(am(alertname="X", instance="b"))
    assert p.group_key == q.group_key == group_dedup_key("defaults", KEY, {"alertname": "X"})
    assert len(p.group_key) == 64


@pytest.mark.parametrize("kept", [1, 2, 65536])
def test_a_group_identity_kept_at_hand_is_the_one_placing_computes(tmp_path, monkeypatch, kept):
    """RuleSet keeps groups' identities (dedup_key, meta) by their group_by values: a kept
    one, and one computed again once the bound emptied them, are the same as a fresh
    RuleSet's; a label that is missing and one that is empty name the same group; and an
    Events v2 event without the grouping labels keeps its own identity even after an alert
    of those same (empty) values was placed."""
    monkeypatch.setattr("proxy.rules.engine.IDENTS", kept)
    path = str(write_rules(tmp_path, RULES))
    rules = RuleSet(load_rules([path]))
    alerts = [am(alertname="X", instance="a"), am(alertname="Y"), am(alertname="X", instance="b"),
              am(instance="c"), am(alertname="", instance="d"), am(team="db", cluster="c1"),
              am(team="db", cluster="c2", alertname="X"), am(alertname="Y", severity="critical"),
              Alert(fingerprint="ev:2", status="firing", labels={"alertname": "X"}, source="events_v2",
                    routing_key=KEY2),  # the sender's own key, no dedup_key
              Alert(fingerprint="ev:3", status="firing", labels={"alertname": "X"}, source="events_v2",
                    routing_key=KEY2[:4] + "0" * 24 + KEY2[-4:])]  # another key, masked the same
    ev = Alert(fingerprint="ev:1", status="firing", labels={"other": "z"}, source="events_v2",
               routing_key=KEY2, dedup_key="d")

    def seen(placed: tuple[list[Placement], str | None]) -> list[tuple[object, ...]]:
        return [(p.group_key, p.rule.name, p.routing_key, p.key_name, p.group_labels, p.meta)
                for p in placed[0]] + [placed[1]]

    for a in [*alerts, ev, *alerts, ev]:
        assert seen(rules.place(a)) == seen(RuleSet(load_rules([path])).place(a)), a
    assert len(rules._idents) <= kept
    assert rules.place(am(instance="c"))[0][0].group_key == rules.place(am(alertname=""))[0][0].group_key
    plain = Alert(fingerprint="ev:4", status="firing", labels={"other": "z"}, source="events_v2",
                  routing_key=KEY2)  # no dedup_key: grouped by its (empty) alertname
    [q], _ = rules.place(plain)
    [p], _ = rules.place(ev)  # the same rule, key and (empty) values: its own identity still
    assert q.group_labels == {"alertname": ""} and p.group_labels == {"fingerprint": "ev:1"}
    assert p.group_key == own_identity_key(KEY2, "ev:1") != q.group_key


def test_events_v2_sender_keeps_its_key_unless_a_rule_names_one(rules):
    ev = Alert(fingerprint="ev:1", status="firing", labels={"alertname": "X"}, source="events_v2",
               routing_key=KEY2, dedup_key="d")
    [p], _ = rules.place(ev)
    assert p.routing_key == KEY2


def test_notes_are_templates_checked_at_load(tmp_path):
    from proxy.errors import ConfigError

    ok = write_rules(tmp_path / "ok", "defaults:\n  routing_key: " + KEY + "\nrules:\n"
                     "  - name: disk\n    match: {alertname: DiskFull}\n    notes:\n"
                     "      - 'Runbook: https://runbooks.example.com/{{ group_labels.alertname }}'\n")
    rule = RuleSet(load_rules([str(ok)])).rule("disk")
    assert [t.render({"group_labels": {"alertname": "DiskFull"}}) for t in rule.notes] == [
        "Runbook: https://runbooks.example.com/DiskFull"]
    for bad, says in (("'{{ labels | nosuchfilter }}'", "nosuchfilter"), ("[]", "list of templates"),
                      ("{a: b}", "list of templates")):
        d = write_rules(tmp_path / f"bad{len(says)}", "defaults:\n  routing_key: " + KEY + "\nrules:\n"
                        "  - name: disk\n    match: {alertname: DiskFull}\n    notes: " + bad + "\n")
        with pytest.raises(ConfigError) as e:
            load_rules([str(d)])
        assert says in str(e.value.errors) and "rules.yml:" in e.value.errors[0]
