"""Matchers in Alertmanager's syntax: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`,
one at a time or as a set `{a="b", c=~"d|e"}`.

Regexes are RE2, as in Alertmanager (google-re2): a rule that works there works here, and
no pattern can backtrack catastrophically (RE2 matches in linear time; it has no
backreferences or lookarounds, and refuses them when the rules load). They are anchored,
as in Alertmanager. A missing label matches as the empty string. Each regex matcher keeps
its last answers for a few thousand label values: label values repeat (env, severity,
alertname), and RE2 costs more per call than Python's `re`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import re2

__all__ = ["Matcher", "matchers_from_mapping", "matches_all", "parse_matcher", "parse_matchers"]

_CACHE = 4096
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors are ours to report, as file:line
_NAME = r"[A-Za-z_][A-Za-z0-9_.]*"
_SYNTAX = re.compile(rf"^\s*({_NAME})\s*(=~|!~|!=|=)\s*(.*?)\s*$")
# one matcher inside a set: name, op, then a quoted value or one up to the next , or }
_IN_SET = re.compile(rf'\s*({_NAME})\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|[^,}}]*?)\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    regex: Any = field(default=None, compare=False)
    answers: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        hit = self.answers.get(v)
        if hit is None:
            assert self.regex is not None
            hit = self.regex.fullmatch(v) is not None
            if len(self.answers) < _CACHE:
                self.answers[v] = hit
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{orjson.dumps(self.value).decode()}"


def _make(name: str, op: str, value: str) -> Matcher:
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re2.compile(value, _OPTIONS)
        except re2.error as e:
            detail = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
            raise ValueError(f"{value!r} is not a valid regular expression (RE2, as in "
                             f"Alertmanager): {detail}") from None
    return Matcher(name, op, value, regex)


def _value(raw: str, text: str) -> str:
    if not raw.startswith('"'):
        return raw
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ValueError(f"{text!r}: unterminated or malformed quoted value") from None
    if not isinstance(value, str):
        raise ValueError(f"{text!r}: value must be a string")
    return value


def parse_matcher(text: str) -> Matcher:
    """One matcher from its text; ValueError with a message fit for `file:line: ...`."""
    m = _SYNTAX.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a matcher (e.g. severity=\"critical\", env!~\"dev|test\")")
    name, op, raw = m.groups()
    return _make(name, op, _value(raw, text))


def parse_matchers(text: str) -> list[Matcher]:
    """`{a="b", c=~"d"}` (a set, as Alertmanager writes them), `a="b", c=~"d"` (a set
    without its braces, as Alertmanager also takes) or a single matcher."""
    inner = text.strip()
    if not (inner.startswith("{") and inner.endswith("}")):
        try:
            return [parse_matcher(text)]
        except ValueError:
            if "," not in inner:
                raise
        inner = "{" + inner + "}"
    inner, out, pos = inner[1:-1], [], 0
    while pos < len(inner) and inner[pos:].strip():
        m = _IN_SET.match(inner, pos)
        if not m or m.end() == pos:
            raise ValueError(f"{text!r} is not a set of matchers (e.g. {{severity=\"critical\", "
                             "env!~\"dev|test\"})")
        out.append(_make(m.group(1), m.group(2), _value(m.group(3), text)))
        pos = m.end()
    return out


def matchers_from_mapping(mapping: Mapping[str, object], raw: Mapping[str, str] | None = None,
                          regex: bool = False) -> list[Matcher]:
    """`{label: value}` is equality (`regex`: a regex match, Alertmanager's match_re);
    `{label: [a, b]}` matches any of the values. A value is matched as written (`raw`:
    `port: 010` is "010", not 8), as Alertmanager does."""
    out = []
    for k, v in mapping.items():
        if isinstance(v, list):
            out.append(_make(k, "=~", "|".join(re.escape(_text(x)) for x in v)))
        else:
            out.append(_make(k, "=~" if regex else "=", (raw or {}).get(k, _text(v))))
    return out


def _text(v: object) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def matches_all(matchers: list[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
