"""The error kinds of tests/fixtures/invalid_rules/: one YAML file each, and its exact
`file:line: message` (the loader's unit tests and the CLI's e2e tests read them)."""

from __future__ import annotations

# One file per error kind, and the exact line `alert-proxy check` prints for it.
EXPECTED = {
    "bad_duration": "3: rule 'db': group_wait: '30' is not a duration (e.g. 30s, 5m, 4h, 1h30m)",
    "bad_matcher": "5: rule 'db': match: 'severity critical' is not a matcher "
                   "(e.g. severity=\"critical\", env!~\"dev|test\")",
    "bad_max_alerts": "3: rule 'db': max_alerts: 0 is not a positive whole number",
    "bad_on_growth": "3: rule 'db': on_growth: 'always' must be ignore or update",
    "bad_regex": "3: rule 'db': match: 'db[0-9' is not a valid regular expression (RE2, as "
                 "in Alertmanager): missing ]: [0-9",
    "bad_routing_key": "3: rule 'db': routing_key: the value given (9 characters): not a "
                       "PagerDuty routing key (32 alphanumeric characters)",
    "bad_time_zone": "3: maintenance 'm': time_zone: 'Mars/Olympus' is not a time zone "
                     "(e.g. Europe/Berlin, UTC)",
    "bad_weekday": "3: maintenance 'm': weekdays: 'funday' is not a weekday or range "
                   "(e.g. monday, monday:friday)",
    "inhibit_without_source": "2: inhibit[0]: source_match or source_matchers is required",
    "bad_severity": "3: rule 'db': severity: 'sev1' is not a PagerDuty severity "
                    "(critical, error, warning, info)",
    "bad_severity_map": "3: rule 'db': severity_map: 'urgent' is not a PagerDuty severity "
                        "(critical, error, warning, info)",
    "defaults_key_in_defaults": "2: defaults: unknown key 'match' (it belongs to a rule; "
                                "defaults apply to every alert)",
    "drop_not_bool": "3: rule 'db': drop: 'sometimes' is not true or false",
    "duplicate_key": "4: YAML: duplicate key 'severity'",
    "duplicate_name": "4: rule 'db': name already used at tests/fixtures/invalid_rules/duplicate_name.yml:2",
    "group_by_all_mixed": "3: rule 'db': group_by: [...] groups by all labels and cannot be "
                          "combined with names",
    "group_by_not_list": "3: rule 'db': group_by: must be a list of label names, or [...] for all labels",
    "link_unknown_key": "3: rule 'db': links: item 0: unknown key 'title' (allowed: href, text)",
    "link_without_href": "3: rule 'db': links: item 0 needs 'href'",
    "missing_env": "2: defaults: routing_key: environment variable ALERT_PROXY_TEST_UNSET_VARIABLE "
                   "is not set",
    "missing_name": "2: rules[0]: name: every rule needs a name (it keeps its windows across reloads)",
    "template_error": "3: rule 'db': summary: template does not compile: unexpected end of "
                      "template, expected 'end of print statement'.",
    "top_level_list": "1: a rules file is a mapping with 'defaults' and 'rules'",
    "unknown_rule_key": "4: rule 'db': unknown key 'group_wiat' (did you mean 'group_wait'?)",
    "unknown_top_key": "3: unknown top-level key 'route' (known: defaults, rules, inhibit, "
                       "maintenance, sources, heartbeats, actions)",
    "heartbeat_without_every": "4: heartbeats 'watchdog': every is required (e.g. every: 5m)",
    "heartbeat_twice": "8: heartbeats 'watchdog': name already used at "
                       "tests/fixtures/invalid_rules/heartbeat_twice.yml:4",
    "heartbeat_bad_template": "7: heartbeats 'watchdog': summary: template names 'labels', which "
                              "is not defined here (known: name, every, grace, silent_for)",
    "yaml_syntax": "4: YAML: expected ',' or ']', but got '-'",
    "zero_interval": "2: defaults: group_interval: '0s' must be longer than 0s",
}
