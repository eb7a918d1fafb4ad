"""The `sources:` section of the rules: generic JSON webhooks mapped to alerts.

    sources:
      - name: grafana                 # POST /v1/webhook/grafana
        builtin: grafana              # grafana, cloudwatch-sns, uptime-kuma
      - name: aws
        builtin: cloudwatch-sns
        sns: {topics: ["arn:aws:sns:eu-west-1:123456789012:alarms"]}
      - name: ci                      # a mapping of your own
        items: data.alerts
        status: "{{ 'resolved' if item.state == 'ok' else 'firing' }}"
        labels: {alertname: "{{ item.check }}", host: "{{ item.host }}"}

A built-in mapping is a file in proxy/ingest/builtin/ written with the same keys; keys
given beside `builtin:` replace the built-in's (`labels:` adds to them)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from proxy.durations import parse_duration
from proxy.ingest.webhook import Mapping, SnsSettings
from proxy.jsontypes import JsonObject
from proxy.rules.templates import SOURCE_NAMES, Template, compile_template
from proxy.rules.yamlfile import Ctx, LDict, load_yaml

__all__ = ["BUILTINS", "load_sources"]

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "ingest" / "builtin"
BUILTINS = {"grafana": "grafana.yml", "cloudwatch-sns": "cloudwatch-sns.yml",
            "uptime-kuma": "uptime-kuma.yml"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_PATH = re.compile(r"^[^.\s]+(\.[^.\s]+)*$")
_DEFAULT_CERT_HOSTS = ("sns.*.amazonaws.com", "sns.*.amazonaws.com.cn")
_SNS_KEYS = ("topics", "cert_hosts", "ca_file", "confirm", "max_age")
_KEYS = ("name", "builtin", "items", "when", "require", "status", "labels_from", "labels",
         "annotations_from", "annotations", "summary", "severity", "fingerprint", "starts_at",
         "links", "images", "sns")


def _template(v: Any) -> Template:
    if not isinstance(v, (str, int, float)) or isinstance(v, bool):
        raise ValueError(f"{v!r} is not a string template")
    return compile_template(str(v), SOURCE_NAMES)


def _path(v: Any) -> tuple[str, ...]:
    if not isinstance(v, str) or not _PATH.match(v):
        raise ValueError(f"{v!r} is not a path into the body (e.g. alerts, data.items)")
    return tuple(v.split("."))


def _paths(v: Any) -> tuple[tuple[str, ...], ...]:
    if not isinstance(v, list):
        raise ValueError("must be a list of paths (e.g. [status, labels.alertname])")
    return tuple(_path(p) for p in v)


def _templates(v: Any) -> dict[str, Template]:
    if not isinstance(v, dict):
        raise ValueError("must be a mapping of names to templates")
    return {str(k): _template(t) for k, t in v.items()}


def _link_pairs(first: str, second: str) -> Callable[[Any], tuple[tuple[Template, Template | None], ...]]:
    def check(v: Any) -> tuple[tuple[Template, Template | None], ...]:
        if not isinstance(v, list):
            raise ValueError(f"must be a list of {{{first}, {second}}}")
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, dict) or first not in item or set(item) - {first, second}:
                raise ValueError(f"item {i} must have {first!r} (and may have {second!r})")
            out.append((_template(item[first]),
                        _template(item[second]) if item.get(second) is not None else None))
        return tuple(out)

    return check


def _sns(v: Any) -> SnsSettings:
    if not isinstance(v, dict):
        raise ValueError("must be a mapping (e.g. {topics: [arn:aws:sns:eu-west-1:123456789012:alarms]})")
    unknown = set(v) - set(_SNS_KEYS)
    if unknown:
        raise ValueError(f"unknown key {min(unknown)!r} (known: {', '.join(_SNS_KEYS)})")
    topics = v.get("topics")
    if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
        raise ValueError("topics: list the TopicArns to take (an SNS signature only proves that "
                         "some AWS account's topic sent the message; * matches any part)")
    hosts = v.get("cert_hosts", list(_DEFAULT_CERT_HOSTS))
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise ValueError("cert_hosts: must be a list of host names (* is one DNS label)")
    ca_file = v.get("ca_file")
    if ca_file is not None and not (isinstance(ca_file, str) and Path(ca_file).is_file()):
        raise ValueError(f"ca_file: {ca_file!r} is not a readable file")
    confirm = v.get("confirm", True)
    if not isinstance(confirm, bool):
        raise ValueError(f"confirm: {confirm!r} is not true or false")
    return SnsSettings(topics=tuple(topics), cert_hosts=tuple(hosts), ca_file=ca_file,
                       confirm=confirm, max_age=parse_duration(v.get("max_age", "1h")))


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "items": _path, "when": _template, "require": _paths, "status": _template,
    "labels_from": _path, "labels": _templates, "annotations_from": _path,
    "annotations": _templates, "summary": _template, "severity": _template,
    "fingerprint": _template, "starts_at": _template, "links": _link_pairs("href", "text"),
    "images": _link_pairs("src", "alt"), "sns": _sns,
}


def _builtin(name: str) -> LDict:
    doc = load_yaml(BUILTIN_DIR / BUILTINS[name])
    assert isinstance(doc, LDict), name
    return doc


def load_sources(ctx: Ctx, raw: Any, seen: dict[str, str]) -> list[Mapping]:
    """The `sources:` list of one file; problems go to `ctx` as file:line. `seen` holds the
    names already given (in any file) and where."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        ctx.err(raw, None, "sources: must be a list")
        return []
    out = []
    for i, entry in enumerate(raw):
        m = _entry(ctx, raw, i, entry, seen)
        if m is not None:
            out.append(m)
    return out


def _entry(ctx: Ctx, raw: Any, i: int, entry: Any, seen: dict[str, str]) -> Mapping | None:
    if not isinstance(entry, LDict):
        ctx.err(raw, i, f"sources[{i}]: must be a mapping with a name")
        return None
    name = entry.get("name")
    where = f"source {name!r}: " if isinstance(name, str) else f"sources[{i}]: "
    at = f"{ctx.path}:{entry.line}"
    if not isinstance(name, str) or not _NAME.match(name):
        ctx.err(entry, "name" if "name" in entry else None, f"{where}name: every source needs a "
                "name of lowercase letters, digits, - and _ (it is the path /v1/webhook/NAME)")
        return None
    if name in seen:
        ctx.err(entry, "name", f"{where}name already used at {seen[name]}")
        return None
    seen[name] = at
    for key in entry:
        if key not in _KEYS:
            ctx.err(entry, key, f"{where}unknown key {key!r} (known: {', '.join(_KEYS)})")
    given: JsonObject = {}
    builtin = entry.get("builtin")
    if builtin is not None:
        if builtin not in BUILTINS:
            ctx.err(entry, "builtin", f"{where}builtin: {builtin!r} is not a built-in mapping "
                    f"(known: {', '.join(BUILTINS)})")
            return None
        given.update(_builtin(builtin))
    for key, value in entry.items():
        if key == "labels" and isinstance(value, dict) and isinstance(given.get(key), dict):
            given[key] = {**given[key], **value}  # labels add to the built-in's
        elif key in _CHECKS:
            given[key] = value
    if "status" not in given:
        ctx.err(entry, None, f"{where}status is required (a template giving firing or resolved), "
                "or name a builtin")
        return None
    if builtin == "cloudwatch-sns" and "sns" not in entry:
        ctx.err(entry, None, f"{where}sns: {{topics: [...]}} is required: the TopicArns to take")
        return None
    values: JsonObject = {}
    for key, value in given.items():
        try:
            values[key] = _CHECKS[key](value)
        except ValueError as e:
            ctx.err(entry, key if key in entry else "builtin", f"{where}{key}: {e}")
    if len(values) < len(given):
        return None
    return Mapping(name=name, builtin=str(builtin or ""), where=at, **values)
