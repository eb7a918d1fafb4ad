"""Alertmanager's spelling, accepted where ops paste it: `matchers:` lists and `{...}`
sets, `match_re`, `source_matchers`/`target_matchers`, time_intervals fields, Prometheus
durations only, RE2 regexes."""

from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from proxy.durations import parse_duration
from proxy.errors import ConfigError
from proxy.rules import load_rules
from proxy.rules.matchers import parse_matcher, parse_matchers
from tests.conftest import write_rules


@pytest.mark.parametrize("text,seconds", [
    ("30s", 30), ("5m", 300), ("1h30m", 5400), ("1d", 86400), ("2w", 1209600),
    ("1y", 31536000), ("500ms", 0.5), ("1m500ms", 60.5), ("0", 0), (0, 0),
])
def test_prometheus_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1.5m", "30s5m", "5", "5 m", "-5m", "1h1h", "", "m", 30, True])
def test_durations_alertmanager_refuses(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_matcher_sets():
    ms = parse_matchers('{severity="critical", env=~"prod|staging",team!="db"}')
    assert [str(m) for m in ms] == ['severity="critical"', 'env=~"prod|staging"', 'team!="db"']
    assert all(m.matches({"severity": "critical", "env": "prod", "team": "web"}) for m in ms)
    assert parse_matchers('{msg="a, b} c"}')[0].value == "a, b} c"  # quoted , and } kept
    assert parse_matchers("{}") == []
    with pytest.raises(ValueError, match="not a set of matchers"):
        parse_matchers('{severity critical}')


def test_re2_refuses_what_alertmanager_refuses():
    with pytest.raises(ValueError, match="RE2"):
        parse_matcher(r'a=~"(x)\\1"')  # backreference: Go's regexp has none
    with pytest.raises(ValueError, match="RE2"):
        parse_matcher('a=~"(?=x)"')  # lookahead


def test_no_catastrophic_backtracking():
    m = parse_matcher('path=~"(a+)+$"')
    started = time.process_time()
    assert not m.matches({"path": "a" * 100_000 + "b"})
    assert time.process_time() - started < 1.0  # Python's re: longer than the universe


def test_rule_matchers_keys(tmp_path):
    rules = load_rules([write_rules(tmp_path, """
rules:
  - name: db
    matchers:
      - '{service="db", env=~"prod|staging"}'
      - severity!="info"
    match_re:
      instance: "db-[0-9]+"
    group_by: [alertname]
""")])
    ms = rules.rules[0].matchers
    assert [str(m) for m in ms] == ['service="db"', 'env=~"prod|staging"', 'severity!="info"',
                                    'instance=~"db-[0-9]+"']


def test_inhibit_source_target_matchers(tmp_path):
    rules = load_rules([write_rules(tmp_path, """
rules: [{name: all}]
inhibit:
  - source_matchers: ['severity="critical"']
    target_matchers: ['{severity=~"warning|info"}']
    equal: [cluster]
""")])
    inh = rules.inhibit[0]
    assert [str(m) for m in inh.source] == ['severity="critical"']
    assert [str(m) for m in inh.target] == ['severity=~"warning|info"']


def _at(text: str, tz: str = "UTC") -> float:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz)).timestamp()


def test_time_interval_fields(tmp_path):
    rules = load_rules([write_rules(tmp_path, """
rules: [{name: all}]
maintenance:
  - name: office
    location: Europe/Berlin
    weekdays: ['monday:friday']
    times: [{start_time: "09:00", end_time: "17:00"}]
    days_of_month: ['1:7', '-1']
    months: ['january:march', '12']
    years: ['2026:2027']
""")])
    mw = rules.maintenance[0]
    assert mw.tz.key == "Europe/Berlin"
    assert mw.active(_at("2027-01-04T10:00", "Europe/Berlin"))  # Monday, 4th, January
    assert not mw.active(_at("2027-01-04T08:00", "Europe/Berlin"))  # before 09:00 there
    assert not mw.active(_at("2027-01-11T10:00", "Europe/Berlin"))  # the 11th
    assert mw.active(_at("2027-03-31T10:00", "Europe/Berlin"))  # -1: last day of March
    assert not mw.active(_at("2027-04-01T10:00", "Europe/Berlin"))  # April
    assert not mw.active(_at("2028-01-03T10:00", "Europe/Berlin"))  # 2028


@pytest.mark.parametrize("body,message", [
    ("days_of_month: ['0']", "days_of_month: '0': 0 is not a day of the month (-31 to 31)"),
    ("days_of_month: ['5:2']", "days_of_month: '5:2': the range ends before it starts"),
    ("months: ['smarch']", "months: 'smarch' is not a month or range"),
    ("years: 2026", "years: must be a list"),
    ("location: Mars/Olympus\n    weekdays: [monday]", "location: 'Mars/Olympus' is not a time zone"),
    ("times: [{start_time: '25:00', end_time: '26:00'}]", "times: '25:00' is not a time of day"),
])
def test_time_interval_errors(tmp_path, body, message):
    path = write_rules(tmp_path, f"""
rules: [{{name: all}}]
maintenance:
  - name: m
    {body}
""")
    with pytest.raises(ConfigError) as e:
        load_rules([path])
    [error] = e.value.errors
    assert error.startswith(f"{path / 'rules.yml'}:5: maintenance 'm': {message}")
