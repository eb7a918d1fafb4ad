"""Load and validate rule files strictly: every problem is `file:line: key: message`.

A rules location is a file or a folder; a folder loads its `*.yml`/`*.yaml` files in name
order, skipping rule unit tests (`*.test.yml`, `*.test.yaml`). Rules from several files
are one ordered list; `defaults` may be given in one file only.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from proxy.durations import parse_duration
from proxy.errors import ConfigError
from proxy.ingest.webhook import Mapping
from proxy.model import SEVERITIES
from proxy.redact import mask
from proxy.rules.matchers import Matcher, matchers_from_mapping, parse_matchers
from proxy.rules.sources import load_sources
from proxy.rules.suppress import WEEKDAYS, Inhibit, Maintenance
from proxy.rules.templates import ALERT_NAMES, ENRICH_NAMES, JsonBody, Template, compile_template
from proxy.rules.yamlfile import Ctx as _Ctx
from proxy.rules.yamlfile import LDict, LList, load_yaml

__all__ = ["Flap", "Remediate", "Rule", "RuleFile", "Storm", "load_rules", "load_yaml", "rule_files"]

ALL_LABELS = ("...",)
MAX_FLAP_CHANGES = 20  # the stores keep this many status changes per alert


@dataclass(frozen=True, slots=True)
class Flap:
    """An alert that changed state `changes` times within `within` seconds is flapping;
    its group pages once and stays open until it has been stable for `hold` seconds."""

    changes: int
    within: float
    hold: float


@dataclass(frozen=True, slots=True)
class Remediate:
    """Call an automatic fix when a group would first page, and hold the page for `wait`:
    if the group resolves meanwhile nobody is paged. `url`, `headers` and `body` are
    templates over the group (as the enrichment templates); `${VAR}` in them is read from
    the environment when the rules load (tokens stay off the rule files)."""

    url: Template
    method: str
    headers: dict[str, Template]
    body: Template | JsonBody | None  # a string (values JSON-escaped) or a YAML mapping
    timeout: float
    wait: float
    secrets: tuple[str, ...] = ()  # the values ${VAR} gave: never shown in a page or a log


@dataclass(frozen=True, slots=True)
class Storm:
    """More than `groups` groups opening on one routing key within `within` seconds: the
    rest fold into one storm incident per key until it is calm (no new group for `within`)."""

    groups: int
    within: float


@dataclass(slots=True)
class Rule:
    """One compiled rule; `defaults` is a Rule too, with every setting filled in."""

    name: str
    matchers: list[Matcher] = field(default_factory=list)
    cont: bool = False
    drop: bool = False
    routing_key: str | None = None
    own_key: bool = False  # the rule itself names a key (beats an Events v2 sender's key)
    key_name: str = ""  # what logs and metrics show instead of the key
    severity: str | None = None
    severity_map: dict[str, str] = field(default_factory=dict)
    group_by: tuple[str, ...] = ("alertname",)
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 14400.0
    resolve_wait: float | None = None  # None: group_interval
    max_alerts: int = 1000
    on_growth: str = "ignore"
    summary: Template | None = None
    custom_details: dict[str, Template] = field(default_factory=dict)
    links: list[dict[str, Template]] = field(default_factory=list)
    images: list[dict[str, Template]] = field(default_factory=list)
    client: Template | None = None
    client_url: Template | None = None
    severity_template: Template | None = None  # `severity:` given as a template over each alert
    pd_class: Template | None = None  # the payload's class, component and group
    component: Template | None = None
    group: Template | None = None
    labels: dict[str, Template] = field(default_factory=dict)  # set before grouping
    flap: Flap | None = None
    min_alerts: int = 0  # page only once this many alerts fire (0: from the first) ...
    for_: float = 0.0  # ... or once the group has been firing this long (0: at once)
    stale_after: float = 0.0  # resolve a group no source refreshed for this long (0: never)
    storm: Storm | None = None  # defaults only
    remediate: Remediate | None = None
    # Alertmanager's route tree: an alert the rule matches goes to the first of these that
    # matches (`continue` as among rules), or to the rule itself if none does; they inherit
    # the rule's settings
    routes: list[Rule] = field(default_factory=list)
    where: str = ""  # file:line of the rule


@dataclass(slots=True)
class RuleFile:
    defaults: Rule
    rules: list[Rule]
    inhibit: list[Inhibit] = field(default_factory=list)
    maintenance: list[Maintenance] = field(default_factory=list)
    sources: dict[str, Mapping] = field(default_factory=dict)  # webhook name -> its mapping


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


_PLACEHOLDERS: ContextVar[set[str] | None] = ContextVar("placeholders", default=None)
PLACEHOLDER = "0" * 32  # shaped like a routing key, so that everything else still checks


def _substitute(text: str) -> tuple[str, str]:
    """`${VAR}` / `${VAR:-default}` from the environment; returns (value, name to show).
    While checking with placeholders, an unset VAR gets PLACEHOLDER (and is noted)."""
    names = [m.group(1) for m in _ENV_REF.finditer(text)]

    def one(m: re.Match[str]) -> str:
        v = os.environ.get(m.group(1))
        if v is None:
            if m.group(2) is not None:
                return m.group(2)
            filled = _PLACEHOLDERS.get()
            if filled is None:
                raise ValueError(f"environment variable {m.group(1)} is not set")
            filled.add(m.group(1))
            return PLACEHOLDER
        return v

    value = _ENV_REF.sub(one, text)
    return value, (names[0] if names else mask(value))


def _duration(v: Any) -> float:
    return parse_duration(v)


def _positive_duration(v: Any) -> float:
    d = parse_duration(v)
    if d <= 0:
        raise ValueError(f"{v!r} must be longer than 0s")
    return d


def _severity(v: Any) -> str:
    if v not in SEVERITIES:
        raise ValueError(f"{v!r} is not a PagerDuty severity (critical, error, warning, info)")
    return str(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"{v!r} is not true or false")
    return v


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{v!r} is not a string")
    return v


def _template(v: Any, names: tuple[str, ...] = ENRICH_NAMES, escape: str = "") -> Template:
    if not isinstance(v, (str, int, float)) or isinstance(v, bool):
        raise ValueError(f"{v!r} is not a string template")
    return compile_template(str(v), names, escape)


def _label_templates(v: Any) -> dict[str, Template]:
    """A rule's `labels`: templates over one alert (ALERT_NAMES)."""
    if not isinstance(v, dict):
        raise ValueError("must be a mapping of label names to templates")
    return {str(k): _template(t, ALERT_NAMES) for k, t in v.items()}


def _group_by(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError("must be a list of label names, or [...] for all labels")
    if "..." in v and len(v) > 1:
        raise ValueError("[...] groups by all labels and cannot be combined with names")
    return tuple(v)


def _positive_int(v: Any) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{v!r} is not a positive whole number")
    return v


def _on_growth(v: Any) -> str:
    if v not in ("ignore", "update"):
        raise ValueError(f"{v!r} must be ignore or update")
    return str(v)


def _mapping(v: Any, keys: tuple[str, ...], example: str) -> dict[str, Any]:
    if not isinstance(v, dict) or set(v) != set(keys):
        raise ValueError(f"must be a mapping with {', '.join(keys)} (e.g. {example})")
    return v


def _flap(v: Any) -> Flap:
    d = _mapping(v, ("changes", "within", "hold"), "{changes: 4, within: 10m, hold: 15m}")
    n = _positive_int(d["changes"])
    if not 2 <= n <= MAX_FLAP_CHANGES:
        raise ValueError(f"changes: {n} must be between 2 and {MAX_FLAP_CHANGES}")
    return Flap(n, _positive_duration(d["within"]), _positive_duration(d["hold"]))


def _storm(v: Any) -> Storm:
    d = _mapping(v, ("groups", "within"), "{groups: 20, within: 1m}")
    return Storm(_positive_int(d["groups"]), _positive_duration(d["within"]))


_METHODS = ("GET", "POST", "PUT", "PATCH")


def _remediate(v: Any) -> Remediate:
    if not isinstance(v, dict) or "url" not in v or "wait" not in v:
        raise ValueError("must be a mapping with at least url and wait (e.g. {url: "
                         "https://rundeck/api/45/job/restart/run, wait: 5m})")
    unknown = set(v) - {"url", "method", "headers", "body", "timeout", "wait"}
    if unknown:
        raise ValueError(f"unknown key {min(unknown)!r} (known: url, method, headers, body, "
                         "timeout, wait)")
    secrets: list[str] = []

    def sub(text: Any, what: str, escape: str = "") -> Template:
        value, _ = _substitute(_str(text))
        secrets.extend(os.environ[m.group(1)] for m in _ENV_REF.finditer(str(text))
                       if os.environ.get(m.group(1)))
        try:
            return _template(value, escape=escape)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None

    def shape(node: Any, what: str) -> Any:
        """A body given as YAML: its strings are templates, the rest JSON as it is."""
        if isinstance(node, dict):
            return {str(k): shape(x, f"{what}.{k}") for k, x in node.items()}
        if isinstance(node, list):
            return [shape(x, f"{what}[{i}]") for i, x in enumerate(node)]
        if isinstance(node, str):
            return sub(node, what)
        if node is None or isinstance(node, (bool, int, float)):
            return node
        raise ValueError(f"{what}: {node!r} is not a JSON value")

    body: Template | JsonBody | None = None
    if isinstance(v.get("body"), (dict, list)):
        body = JsonBody(shape(v["body"], "body"))
    elif v.get("body") is not None:
        body = sub(v["body"], "body", "json")
    url = sub(v["url"], "url", "url")
    if not url.source.startswith(("http://", "https://")):
        raise ValueError(f"url: {v['url']!r} is not an http(s) URL")
    method = str(v.get("method", "POST")).upper()
    if method not in _METHODS:
        raise ValueError(f"method: {method!r} is not one of {', '.join(_METHODS)}")
    headers = v.get("headers") or {}
    if not isinstance(headers, dict):
        raise ValueError("headers: must be a mapping of names to values")
    if isinstance(body, JsonBody) and not any(k.lower() == "content-type" for k in headers):
        headers = {**headers, "Content-Type": "application/json"}
    return Remediate(url=url, method=method,
                     headers={str(k): sub(h, f"headers.{k}", "header") for k, h in headers.items()},
                     body=body,
                     timeout=_positive_duration(v.get("timeout", "10s")),
                     wait=_positive_duration(v["wait"]), secrets=tuple(secrets))


def _severity_map(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise ValueError("must be a mapping like {SEV-1: critical, P2: error}")
    return {str(k).lower(): _severity(s) for k, s in v.items()}


def _template_map(v: Any) -> dict[str, Template]:
    if not isinstance(v, dict):
        raise ValueError("must be a mapping of names to templates")
    return {str(k): _template(t) for k, t in v.items()}


def _link_list(required: str, allowed: tuple[str, ...]) -> Callable[[Any], list[dict[str, Template]]]:
    def check(v: Any) -> list[dict[str, Template]]:
        if not isinstance(v, list):
            raise ValueError(f"must be a list of {{{', '.join(allowed)}}}")
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, dict) or required not in item:
                raise ValueError(f"item {i} needs {required!r}")
            unknown = set(item) - set(allowed)
            if unknown:
                raise ValueError(f"item {i}: unknown key {min(unknown)!r} (allowed: {', '.join(allowed)})")
            out.append({k: _template(t) for k, t in item.items()})
        return out

    return check


# key -> (Rule attribute, validator). Shared by `defaults` and every rule.
_SETTINGS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "severity": ("severity", _severity),
    "severity_map": ("severity_map", _severity_map),
    "group_by": ("group_by", _group_by),
    "group_wait": ("group_wait", _duration),
    "group_interval": ("group_interval", _positive_duration),
    "repeat_interval": ("repeat_interval", _positive_duration),
    "resolve_wait": ("resolve_wait", _duration),
    "max_alerts": ("max_alerts", _positive_int),
    "on_growth": ("on_growth", _on_growth),
    "summary": ("summary", _template),
    "custom_details": ("custom_details", _template_map),
    "links": ("links", _link_list("href", ("href", "text"))),
    "images": ("images", _link_list("src", ("src", "href", "alt"))),
    "client": ("client", _template),
    "client_url": ("client_url", _template),
    "class": ("pd_class", _template),
    "component": ("component", _template),
    "group": ("group", _template),
    "labels": ("labels", _label_templates),
    "flap": ("flap", _flap),
    "min_alerts": ("min_alerts", _positive_int),
    "for": ("for_", _positive_duration),
    "stale_after": ("stale_after", _positive_duration),
    "remediate": ("remediate", _remediate),
}
_RULE_ONLY = {"name", "match", "matchers", "match_re", "continue", "drop", "routing_key", "routes"}
_DEFAULTS_ONLY = {"storm": ("storm", _storm)}
_TOP = ("defaults", "rules", "inhibit", "maintenance", "sources")


def _apply(ctx: _Ctx, obj: LDict, rule: Rule, where: str) -> None:
    defaults = where.startswith("defaults")
    for key, value in obj.items():
        if key in _DEFAULTS_ONLY and not defaults:
            ctx.err(obj, key, f"{where}{key}: belongs in defaults (one storm incident per routing key)")
        elif key == "severity" and isinstance(value, str) and ("{{" in value or "{%" in value):
            try:  # a template over each alert, e.g. Alertmanager's severity: '{{ ... }}'
                rule.severity, rule.severity_template = None, _template(value, ALERT_NAMES)
            except ValueError as e:
                ctx.err(obj, key, f"{where}{key}: {e}")
        elif key in _SETTINGS or key in _DEFAULTS_ONLY:
            attr, check = _SETTINGS.get(key) or _DEFAULTS_ONLY[key]
            try:
                setattr(rule, attr, check(value))
            except ValueError as e:
                ctx.err(obj, key, f"{where}{key}: {e}")
        elif key == "routing_key":
            try:
                rk, name = _substitute(_str(value))
                if rk and (len(rk) != 32 or not rk.isalnum() or not rk.isascii()):
                    given = f"{value} gives a {len(rk)}-character value" if _ENV_REF.search(value) \
                        else f"the value given ({len(rk)} characters)"
                    raise ValueError(f"{given}: not a PagerDuty routing key (32 alphanumeric characters)")
                rule.routing_key, rule.key_name = (rk or None), name
                rule.own_key = not where.startswith("defaults")
            except ValueError as e:
                ctx.err(obj, key, f"{where}routing_key: {e}")
        elif key not in _RULE_ONLY or where.startswith("defaults"):
            allowed = sorted(set(_SETTINGS) | ({"routing_key", *_DEFAULTS_ONLY} if defaults else _RULE_ONLY))
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(allowed)}"
            if key in _RULE_ONLY:
                hint = "it belongs to a rule; defaults apply to every alert"
            ctx.err(obj, key, f"{where}unknown key {key!r} ({hint})")


def _matchers(ctx: _Ctx, rule_obj: LDict, where: str, key: str = "match") -> list[Matcher]:
    """One matcher key: a mapping (`match`: equality, `match_re`: regexes, a list value
    meaning any of) or a list of matcher strings, each one matcher or a `{...}` set."""
    m = rule_obj.get(key)
    if m is None:
        return []
    if isinstance(m, dict):
        try:
            return matchers_from_mapping(m, getattr(m, "raw", {}), regex=key.endswith("_re"))
        except ValueError as e:
            ctx.err(rule_obj, key, f"{where}{key}: {e}")
            return []
    if isinstance(m, str):
        m = LList([m])
        m.line, m.lines = rule_obj.lines[key], [rule_obj.lines[key]]
    if not isinstance(m, list) or key.endswith("_re"):
        ctx.err(rule_obj, key, f"{where}{key}: must be a list of matchers or a mapping")
        return []
    out = []
    for i, text in enumerate(m):
        try:
            out += parse_matchers(_str(text))
        except ValueError as e:
            ctx.err(m, i, f"{where}{key}: {e}")
    return out


def _rule_matchers(ctx: _Ctx, obj: LDict, where: str, side: str = "") -> list[Matcher]:
    """`match`, Alertmanager's `matchers` and `match_re` (with `source_`/`target_` for
    inhibit rules): every matcher given must hold."""
    return [m for key in ("match", "matchers", "match_re")
            for m in _matchers(ctx, obj, where, side + key)]


def rule_files(locations: list[str]) -> list[Path]:
    """The rule files at `locations` (files, or folders read in name order)."""
    out: list[Path] = []
    for loc in locations:
        p = Path(loc)
        if p.is_dir():
            out += sorted(
                f for f in p.iterdir()
                if f.suffix in (".yml", ".yaml") and not f.stem.endswith(".test") and f.is_file()
            )
        else:
            out.append(p)
    return out


def load_rules(locations: list[str], placeholders: set[str] | None = None) -> RuleFile:
    """Load every rule file at `locations`; ConfigError listing every problem found. With
    `placeholders` (a set), an unset ${VAR} gets a placeholder and its name is added to the
    set: rules checked in CI without the real keys."""
    token = _PLACEHOLDERS.set(placeholders)
    try:
        return _load_rules(locations)
    except ConfigError:
        raise
    except Exception as e:  # a rule file never crashes anything: a bug here is a reported error
        where = ", ".join(str(f) for f in rule_files(locations)) or ", ".join(locations)
        raise ConfigError([f"{where}: the rules could not be read ({type(e).__name__}: {e}); "
                           "please report this as a bug"]) from e
    finally:
        _PLACEHOLDERS.reset(token)


def _load_rules(locations: list[str]) -> RuleFile:
    files = rule_files(locations)
    errors: list[str] = []
    docs: list[tuple[_Ctx, LDict]] = []
    defaults = Rule(name="defaults")
    defaults_at = ""
    for path in files:
        ctx = _Ctx(path)
        try:
            doc = load_yaml(path)
        except ConfigError as e:
            errors += e.errors
            continue
        if doc is None:
            continue
        if not isinstance(doc, LDict):
            errors.append(f"{path}:1: a rules file is a mapping with 'defaults' and 'rules'")
            continue
        for key in doc:
            if key not in _TOP:
                ctx.err(doc, key, f"unknown top-level key {key!r} (known: {', '.join(_TOP)})")
        d = doc.get("defaults")
        if d is not None:
            if not isinstance(d, LDict):
                ctx.err(doc, "defaults", "defaults: must be a mapping")
            elif defaults_at:
                ctx.err(doc, "defaults", f"defaults: already given at {defaults_at}")
            else:
                defaults_at = f"{path}:{doc.lines['defaults']}"
                _apply(ctx, d, defaults, "defaults: ")
        docs.append((ctx, doc))
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for ctx, doc in docs:
        raw = doc.get("rules")
        if raw is None:
            continue
        if not isinstance(raw, LList):
            ctx.err(doc, "rules", "rules: must be a list")
            continue
        for i, r in enumerate(raw):
            rule = _parse_rule(ctx, raw, i, r, defaults, seen)
            if rule is not None:
                rules.append(rule)
    inhibit: list[Inhibit] = []
    maintenance: list[Maintenance] = []
    sources: dict[str, Mapping] = {}
    source_at: dict[str, str] = {}
    for ctx, doc in docs:
        sources.update((m.name, m) for m in load_sources(ctx, doc.get("sources"), source_at))
        for i, item in enumerate(_list_of_maps(ctx, doc, "inhibit")):
            inhibit.append(_inhibit(ctx, item, i))
        for i, item in enumerate(_list_of_maps(ctx, doc, "maintenance")):
            maintenance.append(_maintenance(ctx, item, i, seen))
    for ctx, _ in docs:
        errors += ctx.errors
    if errors:
        raise ConfigError(errors)
    return RuleFile(defaults=defaults, rules=rules, inhibit=inhibit, maintenance=maintenance,
                    sources=sources)


def _list_of_maps(ctx: _Ctx, doc: LDict, key: str) -> list[LDict]:
    raw = doc.get(key)
    if raw is None:
        return []
    if not isinstance(raw, LList):
        ctx.err(doc, key, f"{key}: must be a list")
        return []
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, LDict):
            out.append(item)
        else:
            ctx.err(raw, i, f"{key}[{i}]: must be a mapping")
    return out


def _unknown(ctx: _Ctx, obj: LDict, where: str, known: tuple[str, ...]) -> None:
    for key in obj:
        if key not in known:
            ctx.err(obj, key, f"{where}unknown key {key!r} (known: {', '.join(known)})")


def _inhibit(ctx: _Ctx, obj: LDict, i: int) -> Inhibit:
    where = f"inhibit[{i}]: "
    sides = ("match", "matchers", "match_re")
    _unknown(ctx, obj, where, (*(f"{s}_{k}" for s in ("source", "target") for k in sides), "equal"))
    for side in ("source", "target"):
        if not any(f"{side}_{k}" in obj for k in sides):
            ctx.err(obj, None, f"{where}{side}_match or {side}_matchers is required")
    equal = obj.get("equal", [])
    if not isinstance(equal, list) or not all(isinstance(x, str) for x in equal):
        ctx.err(obj, "equal", f"{where}equal: must be a list of label names")
        equal = []
    return Inhibit(source=_rule_matchers(ctx, obj, where, "source_"),
                   target=_rule_matchers(ctx, obj, where, "target_"), equal=tuple(equal),
                   where=f"{ctx.path}:{obj.line}")


def _clock_time(text: Any) -> time:
    try:
        h, m = str(text).split(":")
        if str(text) == "24:00":
            return time.max
        return time(int(h), int(m))
    except ValueError:
        raise ValueError(f"{text!r} is not a time of day (HH:MM)") from None


def _day(text: Any) -> date:
    if isinstance(text, date):
        return text
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _instant(text: Any, tz: ZoneInfo) -> datetime:
    if isinstance(text, datetime):
        dt = text
    else:
        try:
            dt = datetime.fromisoformat(str(text))
        except ValueError:
            raise ValueError(f"{text!r} is not a date-time (e.g. 2026-12-24T18:00:00)") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=tz)


def _weekdays(items: list[Any]) -> set[int]:
    out: set[int] = set()
    for item in items:
        first, _, last = str(item).lower().partition(":")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"{item!r} is not a weekday or range (e.g. monday, monday:friday)")
        a, b = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        out.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return out


_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")


def _int_ranges(items: Any, what: str, lo: int, hi: int, example: str,
                names: tuple[str, ...] = ()) -> list[tuple[int, int]]:
    """Alertmanager's inclusive ranges: `5`, `1:5`, `-3:-1` (days), `january:march`."""
    if not isinstance(items, list):
        raise ValueError(f"must be a list (e.g. {example})")
    def one(item: Any, text: str) -> int:
        text = text.strip().lower()
        if text in names:
            return names.index(text) + 1
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"{item!r} is not a {what} or range (e.g. {example})") from None
        if not (lo <= n <= hi) or n == 0:
            raise ValueError(f"{item!r}: {n} is not a {what} ({lo} to {hi})")
        return n

    out = []
    for item in items:
        first, _, last = str(item).partition(":")
        a, b = one(item, first), one(item, last or first)
        if (a > 0) == (b > 0) and a > b:
            raise ValueError(f"{item!r}: the range ends before it starts")
        out.append((a, b))
    return out


def _pairs(obj: LDict, key: str, a: str, b: str, conv: Callable[[Any], Any],
           alias: tuple[str, str] | None = None) -> list[tuple[Any, Any]]:
    """A list of {a: ..., b: ...}; `alias` names Alertmanager's spelling of a and b."""
    raw = obj.get(key, [])
    if not isinstance(raw, list):
        raise ValueError(f"must be a list of {{{a}: ..., {b}: ...}}")
    out = []
    for item in raw:
        if isinstance(item, dict) and alias and alias[0] in item and alias[1] in item:
            item = {a: item[alias[0]], b: item[alias[1]]}
        if not isinstance(item, dict) or a not in item or b not in item:
            raise ValueError(f"each item needs {a!r} and {b!r}")
        out.append((conv(item[a]), conv(item[b])))
    return out


def _maintenance(ctx: _Ctx, obj: LDict, i: int, rule_names: dict[str, str]) -> Maintenance:
    name = obj.get("name")
    where = f"maintenance {name!r}: " if isinstance(name, str) else f"maintenance[{i}]: "
    _unknown(ctx, obj, where, ("name", "match", "matchers", "rules", "time_zone", "location",
                               "weekdays", "times", "dates", "ranges", "days_of_month", "months",
                               "years"))
    mw = Maintenance(name=str(name or f"maintenance[{i}]"),
                     matchers=_rule_matchers(ctx, obj, where))
    scope = obj.get("rules", [])
    if not isinstance(scope, list) or not all(isinstance(n, str) for n in scope):
        ctx.err(obj, "rules", f"{where}rules: must be a list of rule names (as Alertmanager's "
                "mute_time_intervals on a route)")
    else:
        mw.rules = frozenset(scope)
        for n in sorted(mw.rules - set(rule_names)):
            ctx.err(obj, "rules", f"{where}rules: {n!r} is not the name of a rule")
    zone_key = "location" if "location" in obj else "time_zone"  # location: Alertmanager's
    try:
        mw.tz = ZoneInfo(str(obj.get(zone_key, "UTC")))
    except (ZoneInfoNotFoundError, ValueError):
        ctx.err(obj, zone_key, f"{where}{zone_key}: {obj.get(zone_key)!r} is not a time zone "
                "(e.g. Europe/Berlin, UTC)")
    checks: dict[str, Callable[[], None]] = {
        "weekdays": lambda: setattr(mw, "weekdays", _weekdays(list(obj["weekdays"]))),
        "times": lambda: setattr(mw, "times", _pairs(obj, "times", "start", "end", _clock_time,
                                                     ("start_time", "end_time"))),
        "dates": lambda: setattr(mw, "dates", _pairs(obj, "dates", "start", "end", _day)),
        "ranges": lambda: setattr(mw, "ranges", _pairs(obj, "ranges", "from", "until",
                                                       lambda t: _instant(t, mw.tz))),
        "days_of_month": lambda: setattr(mw, "days_of_month", _int_ranges(
            obj["days_of_month"], "day of the month", -31, 31, "['1:5', '-1']")),
        "months": lambda: setattr(mw, "months", {m for a, b in _int_ranges(
            obj["months"], "month", 1, 12, "['january:march', '12']", _MONTHS)
            for m in range(a, b + 1)}),
        "years": lambda: setattr(mw, "years", _int_ranges(
            obj["years"], "year", 1, 9999, "['2026:2027']")),
    }
    for key, check in checks.items():
        if key in obj:
            try:
                check()
            except (ValueError, TypeError) as e:
                ctx.err(obj, key, f"{where}{key}: {e}")
    if not any(k in obj for k in checks):
        ctx.err(obj, None, f"{where}needs at least one of {', '.join(checks)}")
    return mw


def _parse_rule(ctx: _Ctx, raw: LList, i: int, r: Any, parent: Rule, seen: dict[str, str]) -> Rule | None:
    """One rule, inheriting `parent`'s settings (the defaults, or the rule whose `routes:`
    it is in); its own `routes:` inherit from it in turn. `seen`: names given so far."""
    if not isinstance(r, LDict):
        ctx.err(raw, i, f"rules[{i}]: must be a mapping")
        return None
    name = r.get("name")
    where = f"rule {name!r}: " if isinstance(name, str) else f"rules[{i}]: "
    if not isinstance(name, str) or not name.strip():
        ctx.err(r, "name" if "name" in r else None,
                f"{where}name: every rule needs a name (it keeps its windows across reloads)")
    elif name.startswith("("):
        ctx.err(r, "name", f"{where}name: names in parentheses are the proxy's own (e.g. (storm))")
    elif name in seen:
        ctx.err(r, "name", f"rule {name!r}: name already used at {seen[name]}")
    rule = replace(parent, name=str(name), where=f"{ctx.path}:{r.line}", matchers=[], cont=False,
                   drop=False, routes=[])
    seen.setdefault(rule.name, rule.where)
    rule.matchers = _rule_matchers(ctx, r, where)
    for flag, attr in (("continue", "cont"), ("drop", "drop")):
        if flag in r:
            try:
                setattr(rule, attr, _bool(r[flag]))
            except ValueError as e:
                ctx.err(r, flag, f"{where}{flag}: {e}")
    _apply(ctx, r, rule, where)
    children = r.get("routes")
    if children is not None:
        if not isinstance(children, LList):
            ctx.err(r, "routes", f"{where}routes: must be a list of rules")
        elif rule.drop:
            ctx.err(r, "routes", f"{where}routes: a rule that drops has no use for routes")
        else:
            rule.routes = [c for j, child in enumerate(children)
                           if (c := _parse_rule(ctx, children, j, child, rule, seen)) is not None]
    return rule
