"""Rules with `routes:`, routed as Alertmanager's route tree (dispatch/route.go Match):
depth first, the first matching child (more while `continue`), the rule itself when no
child matches; children inherit the rule's settings. Maintenance scoped to rules."""

from __future__ import annotations

import pytest

from proxy.errors import ConfigError
from proxy.model import Alert
from proxy.rules import RuleSet, load_rules
from tests.conftest import write_rules

TREE = """
defaults: {routing_key: "0123456789abcdef0123456789abcdef", group_by: [alertname, cluster, service]}
rules:
  - name: team-x
    match_re: {service: ^(foo1|foo2|baz)$}
    routes:
      - {name: team-x-pager, match: {severity: critical}}
  - name: database
    match: {service: database}
    group_by: [alertname, cluster, database]
    routes:
      - name: db-owners
        match: {owner: team-X}
        continue: true
        routes:
          - {name: db-owners-drop, match: {env: dev}, drop: true}
      - {name: db-y, match: {owner: team-Y}}
      - {name: db-crit, match: {severity: critical}}
  - name: everything-else
    match: ['alertname=~".+"']
    continue: true
  - name: also
    match: ['alertname="Also"']
maintenance:
  - {name: db-nights, rules: [db-y], times: [{start: "00:00", end: "24:00"}]}
"""


@pytest.fixture
def rules(tmp_path) -> RuleSet:
    return RuleSet(load_rules([write_rules(tmp_path, TREE)]))


@pytest.mark.parametrize("labels,names", [
    ({"service": "foo1", "severity": "critical"}, ["team-x-pager"]),
    ({"service": "baz", "severity": "warning"}, ["team-x"]),  # no child matches: the rule itself
    ({"service": "database", "owner": "team-X", "severity": "critical"}, ["db-owners", "db-crit"]),
    ({"service": "database", "owner": "team-X"}, ["db-owners"]),
    ({"service": "database", "owner": "team-Y", "severity": "critical"}, ["db-y"]),
    ({"service": "database"}, ["database"]),
    ({"alertname": "Also"}, ["everything-else", "also"]),
    ({"alertname": "X"}, ["everything-else"]),
    ({"service": "nothing"}, ["defaults"]),
])
def test_routed_as_alertmanager_routes(rules, labels, names):
    placements, reason = rules.place(Alert("f", "firing", labels, "alertmanager"))
    assert reason is None and [p.rule.name for p in placements] == names


def test_children_inherit_and_drop_anywhere(rules):
    [p] = rules.place(Alert("f", "firing", {"service": "database", "owner": "team-Y", "database": "d1",
                                            "alertname": "A", "cluster": "c"}, "am"))[0]
    assert p.group_labels == {"alertname": "A", "cluster": "c", "database": "d1"}  # the parent's group_by
    assert rules.place(Alert("f", "firing", {"service": "database", "owner": "team-X", "env": "dev"},
                             "am")) == ([], "dropped")
    assert [d for d, _ in rules.walk()] == [0, 1, 0, 1, 2, 1, 1, 0, 0]


def test_maintenance_scoped_to_rules(rules):
    labels = {"service": "database"}
    assert rules.in_maintenance(labels, 0.0, "db-y") and not rules.in_maintenance(labels, 0.0, "database")


def test_route_errors(tmp_path):
    path = write_rules(tmp_path, """
rules:
  - name: a
    routes: {name: b}
  - name: c
    routes:
      - {name: a}
      - {name: d, drop: true, routes: []}
maintenance:
  - {name: m, rules: [nope], weekdays: [monday]}
""")
    with pytest.raises(ConfigError) as e:
        load_rules([path])
    f = path / "rules.yml"
    assert e.value.errors == [
        f"{f}:4: rule 'a': routes: must be a list of rules",
        f"{f}:7: rule 'a': name already used at {f}:3",
        f"{f}:8: rule 'd': routes: a rule that drops has no use for routes",
        f"{f}:10: maintenance 'm': rules: 'nope' is not the name of a rule",
    ]
