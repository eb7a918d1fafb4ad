"""Matchers in Alertmanager's syntax: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.

Regexes are anchored as in Alertmanager; a missing label matches as the empty string."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

__all__ = ["Matcher", "matchers_from_mapping", "matches_all", "parse_matcher"]

_SYNTAX = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False)

    def matches(self, labels: Mapping[str, str]) -> bool:
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(v) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f"{self.name}{self.op}{orjson.dumps(self.value).decode()}"


def _make(name: str, op: str, value: str) -> Matcher:
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as e:
            raise ValueError(f"{value!r} is not a valid regular expression: {e}") from None
    return Matcher(name, op, value, regex)


def parse_matcher(text: str) -> Matcher:
    """One matcher from its text; ValueError with a message fit for `file:line: ...`."""
    m = _SYNTAX.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a matcher (e.g. severity=\"critical\", env!~\"dev|test\")")
    name, op, raw = m.groups()
    if raw.startswith('"'):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ValueError(f"{text!r}: unterminated or malformed quoted value") from None
        if not isinstance(value, str):
            raise ValueError(f"{text!r}: value must be a string")
    else:
        value = raw
    return _make(name, op, value)


def matchers_from_mapping(mapping: Mapping[str, object], raw: Mapping[str, str] | None = None) -> list[Matcher]:
    """`{label: value}` is equality; `{label: [a, b]}` matches any of the values. A value is
    matched as written (`raw`: `port: 010` is "010", not 8), as Alertmanager does."""
    out = []
    for k, v in mapping.items():
        if isinstance(v, list):
            out.append(_make(k, "=~", "|".join(re.escape(_text(x)) for x in v)))
        else:
            out.append(_make(k, "=", (raw or {}).get(k, _text(v))))
    return out


def _text(v: object) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def matches_all(matchers: list[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
