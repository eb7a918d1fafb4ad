"""Load and validate rule files strictly: every problem is `file:line: key: message`.

A rules location is a file or a folder; a folder loads its `*.yml`/`*.yaml` files in name
order, skipping rule unit tests (`*.test.yml`, `*.test.yaml`). Rules from several files
are one ordered list; `defaults` may be given in one file only.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from pathlib import Path
from typing import Any

from proxy.errors import ConfigError
from proxy.ingest.webhook import Mapping
from proxy.rules.actions import Action, load_action
from proxy.rules.heartbeats import load_heartbeat
from proxy.rules.maintenance import _maintenance
from proxy.rules.sources import load_sources
from proxy.rules.suppress import Inhibit, Maintenance
from proxy.rules.templates import ALERT_NAMES
from proxy.rules.types import Heartbeat, Rule, RuleFile
from proxy.rules.values import (
    _PLACEHOLDERS,
    _SETTINGS,
    _bool,
    _list_of_maps,
    _rule_matchers,
    _storm,
    _template,
    _unknown,
    routing_key,
)
from proxy.rules.yamlfile import Ctx as _Ctx
from proxy.rules.yamlfile import LDict, LList, load_yaml

__all__ = ["load_rules", "load_yaml", "rule_files"]



_RULE_ONLY = {"name", "match", "matchers", "match_re", "continue", "drop", "routing_key", "routes"}
_DEFAULTS_ONLY = {"storm": ("storm", _storm)}
_TOP = ("defaults", "rules", "inhibit", "maintenance", "sources", "heartbeats", "actions")


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
                rk, name = routing_key(value)
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
    heartbeats: list[Heartbeat] = []
    beat_at: dict[str, str] = {}
    actions: list[Action] = []
    action_at: dict[str, str] = {}
    for ctx, doc in docs:
        for i, item in enumerate(_list_of_maps(ctx, doc, "actions")):
            if (act := load_action(ctx, item, i, action_at)) is not None:
                actions.append(act)
        for i, item in enumerate(_list_of_maps(ctx, doc, "heartbeats")):
            if (hb := load_heartbeat(ctx, item, i, defaults, beat_at)) is not None:
                heartbeats.append(hb)
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
                    sources=sources, heartbeats=heartbeats, actions=actions)




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
