"""`alert-proxy import alertmanager.yml`: an Alertmanager configuration as a rules file.

    route tree      ordered rules. A subtree is flattened (its routes first, each with
                    the matchers of the path to it, then the route itself as the fallback)
                    wherever that routes exactly as Alertmanager does, that is where no
                    route under it says `continue: true`; elsewhere the route keeps its
                    children as `routes:`. group_by and the timings a route inherits are
                    written where they differ from the defaults.
    receivers       a routing key per receiver, as ${PD_KEY_<RECEIVER>} (the key itself is
                    never written); a receiver without pagerduty_configs gets
                    ${PD_KEY_<RECEIVER>:-}: its alerts page nobody unless the variable is set.
                    Its pagerduty_configs' severity (Alertmanager's default: error),
                    description, details, client, client_url, links, images, class,
                    component and group become the rule's keys, their Go templates
                    translated (proxy/gotemplates.py) or listed with their line.
    inhibit_rules   inhibit (every spelling as matchers).
    time_intervals  the mute_time_intervals of each route, as maintenance windows scoped
                    to its rule.

What the proxy cannot express (other integrations, Go templates, active_time_intervals,
route labels, ...) is listed as comments at the top of the output, and returned (the CLI
prints it on stderr)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy.durations import parse_duration
from proxy.errors import ConfigError
from proxy.gotemplates import Untranslatable, translate
from proxy.jsontypes import JsonObject
from proxy.model import SEVERITIES
from proxy.rules.matchers import matchers_from_mapping, parse_matchers

__all__ = ["import_alertmanager"]

_ROUTE_KEYS = ("receiver", "group_by", "group_wait", "group_interval", "repeat_interval", "match",
               "match_re", "matchers", "continue", "routes", "mute_time_intervals")
_TIMINGS = (("group_wait", "30s"), ("group_interval", "5m"), ("repeat_interval", "4h"))
_PD_KEYS = ("routing_key", "service_key", "routing_key_file", "service_key_file")
_PD_CARRIED = ("send_resolved", *_PD_KEYS)
_PAGE = ("severity", "description", "details", "client", "client_url", "links", "images", "class",
         "component", "group")
_WHY = {"active_time_intervals": " (routes active only in a time interval: the rule pages at all "
                                  "times)",
        "labels": " (route labels)"}
_INTERVAL_FIELDS = ("times", "weekdays", "days_of_month", "months", "years", "location")


@dataclass
class _Route:
    """One route with the settings it has after inheritance (dispatch/route.go NewRoute)."""

    matchers: list[str]
    receiver: str
    group_by: list[str]
    timings: dict[str, str]
    cont: bool
    mute: list[str]
    where: str
    children: list[_Route] = field(default_factory=list)
    name: str = ""


def _q(text: str) -> str:
    """A YAML single-quoted scalar."""
    return "'" + text.replace("'", "''") + "'"


def _list(items: list[str]) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]"


class _Importer:
    def __init__(self, doc: JsonObject) -> None:
        self.doc = doc
        self.notes: list[str] = []
        self.keys: dict[str, str] = {}  # receiver -> its ${...} routing key reference
        self.fields: dict[str, dict[str, str]] = {}  # receiver -> rule key -> its YAML value
        self.names: set[str] = set()
        self.source = ""  # the file's name, for file:line notes

    # -- receivers --------------------------------------------------------------------
    def receivers(self) -> None:
        for r in self.doc.get("receivers") or []:
            if not isinstance(r, dict) or not isinstance(r.get("name"), str):
                continue
            name = r["name"]
            var = _var(name)
            others = sorted(k for k in r if k.endswith("_configs") and k != "pagerduty_configs" and r[k])
            if others:
                self.notes.append(f"receiver {name!r}: {', '.join(others)} (the proxy pages "
                                  "PagerDuty only)")
            pd = r.get("pagerduty_configs") or []
            if not pd:
                self.keys[name] = f"${{{var}:-}}"
                continue
            self.keys[name] = f"${{{var}}}"
            first = pd[0] if isinstance(pd[0], dict) else {}
            if len(pd) > 1:
                self.notes.append(f"receiver {name!r}: {len(pd)} pagerduty_configs; only the first "
                                  "is imported (a rule has one routing key)")
            if "service_key" in first or "service_key_file" in first:
                self.notes.append(f"receiver {name!r}: service_key is an Events API v1 key; give "
                                  f"{var} the integration's Events API v2 routing key")
            self.fields[name] = self.page_fields(name, first)
            if first.get("send_resolved") is False:
                self.notes.append(f"receiver {name!r}: send_resolved: false (the proxy always "
                                  "resolves what it paged)")
            for k in ("url", "http_config"):
                if k in first:
                    self.notes.append(f"receiver {name!r}: pagerduty_configs {k} (the proxy's own "
                                      "--upstream and its network settings)")
            dropped = sorted(k for k in first if k not in (*_PD_CARRIED, "url", "http_config", *_PAGE))
            if dropped:
                self.notes.append(f"receiver {name!r}: pagerduty_configs {', '.join(dropped)}")

    def _at(self, obj: Any, key: str) -> str:
        line = getattr(obj, "lines", {}).get(key, getattr(obj, "line", 0))
        return f"{self.source}:{line}" if line else self.source

    def _tpl(self, name: str, obj: Any, key: str, value: Any) -> str | None:
        """A Go template as a quoted Jinja one; None (with a note at its line) if it cannot
        be translated or means the proxy's default."""
        try:
            out = translate(str(value))
        except Untranslatable as e:
            self.notes.append(f"{self._at(obj, key)}: receiver {name!r}: {key}: {{{{ {e} }}}} cannot "
                              "be translated (the rule keeps the proxy's default)")
            return None
        return None if out is None else _q(out)

    def page_fields(self, name: str, pd: Any) -> dict[str, str]:
        """The rule keys a receiver's pagerduty_config gives, as YAML values."""
        out: dict[str, str] = {}
        sev = pd.get("severity", "error")  # Alertmanager's default severity
        if isinstance(sev, str) and sev in SEVERITIES:
            out["severity"] = sev
        elif isinstance(sev, str) and (tpl := self._tpl(name, pd, "severity", sev)):
            out["severity"] = tpl
        else:
            out["severity"] = "error"
        out["summary"] = _q("{{ subject }}")  # Alertmanager's default description
        for go, key in (("description", "summary"), ("client", "client"), ("client_url", "client_url"),
                        ("class", "class"), ("component", "component"), ("group", "group")):
            if isinstance(pd.get(go), str) and (tpl := self._tpl(name, pd, go, pd[go])) is not None:
                out[key] = tpl
        if out.get("client") == "'Alertmanager'":
            del out["client"]  # its default: the proxy names itself
        details = pd.get("details")
        if isinstance(details, dict):
            kept = {str(k): t for k, v in details.items() if (t := self._tpl(name, details, str(k), v))}
            if kept:
                out["custom_details"] = "{" + ", ".join(f"{_q(k)}: {v}" for k, v in kept.items()) + "}"
        for key, need, *extra in (("links", "href", "text"), ("images", "src", "alt", "href")):
            items = []
            for item in pd.get(key) or []:
                if not isinstance(item, dict) or need not in item:
                    continue
                parts = {k: self._tpl(name, item, k, item[k]) for k in (need, *extra) if k in item}
                if parts.get(need):
                    items.append("{" + ", ".join(f"{k}: {v}" for k, v in parts.items() if v) + "}")
            if items:
                out[key] = "[" + ", ".join(items) + "]"
        return out

    def page_lines(self, receiver: str, base: str | None, p: str) -> list[str]:
        """The receiver's page keys for a rule whose receiver is not its base's: each key
        it sets, and each its base set that it does not, back at the proxy's default."""
        mine = self.fields.get(receiver, {"severity": "error", "summary": _q("{{ subject }}")})
        theirs = self.fields.get(base or "", {})
        out = [f"{p}{k}: {v}" for k, v in mine.items()]
        for k in theirs:
            if k not in mine:
                out.append(f"{p}{k}: " + ("{}" if k == "custom_details" else "[]" if k in ("links", "images")
                                          else "''") + "  # the proxy's default")
        return out

    # -- the route tree ---------------------------------------------------------------
    def route(self, raw: JsonObject, parent: _Route | None, where: str) -> _Route:
        for key in raw:
            if key not in _ROUTE_KEYS:
                self.notes.append(f"{where}: {key}" + _WHY.get(key, ""))
        matchers = _matchers(raw, "", where)
        group_by = raw.get("group_by")
        route = _Route(
            matchers=matchers,
            receiver=str(raw.get("receiver") or (parent.receiver if parent else "")),
            group_by=[str(g) for g in group_by] if group_by is not None else
            (parent.group_by if parent else []),
            timings={k: str(raw.get(k) or (parent.timings[k] if parent else default))
                     for k, default in _TIMINGS},
            cont=bool(raw.get("continue", False)) and parent is not None,
            mute=[str(m) for m in raw.get("mute_time_intervals") or []], where=where)
        for k, v in route.timings.items():
            try:
                parse_duration(v)
            except ValueError as e:
                raise ConfigError([f"{where}: {k}: {e}"]) from None
        route.children = [self.route(c, route, f"{where}.routes[{i}]")
                          for i, c in enumerate(raw.get("routes") or []) if isinstance(c, dict)]
        return route

    def name(self, route: _Route) -> str:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "-", route.receiver).strip("-") or "route"
        name, n = base, 1
        while name in self.names:
            n += 1
            name = f"{base}-{n}"
        self.names.add(name)
        route.name = name
        return name

    @staticmethod
    def _continues_below(route: _Route) -> bool:
        return any(c.cont or _Importer._continues_below(c) for c in route.children)

    def rules(self, route: _Route, prefix: list[str], base: _Route, indent: str) -> list[str]:
        """The rules of `route` and its subtree: flattened (children first, then the route
        as the fallback, each with the path's matchers) where that routes exactly as
        Alertmanager does, nested with routes: otherwise. `base`: what they inherit."""
        if route.children and not route.cont and not self._continues_below(route):
            out = [line for c in route.children
                   for line in self.rules(c, prefix + route.matchers, base, indent)]
            return out + self.rule(route, prefix + route.matchers, base, indent, [])
        nested = [line for c in route.children for line in self.rules(c, [], route, indent + "    ")]
        return self.rule(route, prefix + route.matchers, base, indent, nested)

    def rule(self, route: _Route, matchers: list[str], base: _Route, indent: str,
             nested: list[str]) -> list[str]:
        out = [f"{indent}- name: {self.name(route)}  # {route.where}"]
        p = indent + "  "
        if matchers:
            out.append(f"{p}matchers: {_list(matchers)}")
        if route.cont:
            out.append(f"{p}continue: true")
        if route.receiver != base.receiver:
            out.append(f"{p}routing_key: {self.key(route.receiver)}")
            out += self.page_lines(route.receiver, base.receiver, p)
        if route.group_by != base.group_by:
            out.append(f"{p}group_by: {_group_by(route.group_by)}")
        out += [f"{p}{k}: {v}" for k, v in route.timings.items() if v != base.timings[k]]
        if nested:
            out += [f"{p}routes:", *nested]
        return out

    def key(self, receiver: str) -> str:
        if receiver not in self.keys:
            self.notes.append(f"receiver {receiver!r} is used by a route but not defined")
            self.keys[receiver] = f"${{{_var(receiver)}:-}}"
        return self.keys[receiver]

    # -- inhibit_rules, time intervals ---------------------------------------------------
    def inhibit(self) -> list[str]:
        out = []
        for i, r in enumerate(self.doc.get("inhibit_rules") or []):
            if not isinstance(r, dict):
                continue
            for side, lead in (("source", "  - "), ("target", "    ")):
                # none given: every alert, as in Alertmanager
                found = _matchers(r, side + "_", f"inhibit_rules[{i}]") or ['alertname=~".*"']
                out.append(f"{lead}{side}_matchers: {_list(found)}")
            if r.get("equal"):
                out.append("    equal: " + _list([str(x) for x in r["equal"]]))
        return out

    def maintenance(self, routes: list[_Route]) -> list[str]:
        intervals: dict[str, list[Any]] = {}
        for key in ("mute_time_intervals", "time_intervals"):  # the old spelling, the new
            for ti in self.doc.get(key) or []:
                if isinstance(ti, dict) and isinstance(ti.get("name"), str):
                    intervals[ti["name"]] = ti.get("time_intervals") or []
        users: dict[str, list[str]] = {}
        for r in routes:
            for m in r.mute:
                users.setdefault(m, []).append(r.name)
        out = []
        for interval, names in users.items():
            if interval not in intervals:
                self.notes.append(f"mute_time_intervals {interval!r} is not defined")
                continue
            entries = intervals[interval] or [{}]
            for n, entry in enumerate(entries, 1):
                label = interval if len(entries) == 1 else f"{interval} ({n})"
                out += [f"  - name: {_q(label)}", f"    rules: {_list(names)}"]
                given = {k: v for k, v in (entry or {}).items() if k in _INTERVAL_FIELDS}
                if not any(k != "location" for k in given):
                    out.append("    weekdays: ['monday:sunday']  # an empty interval is always")
                for k, v in given.items():
                    out.append(f"    {k}: {_yaml(v)}")
        return out


def _matchers(raw: JsonObject, prefix: str, where: str) -> list[str]:
    """`match`, `match_re` and `matchers` (with `source_`/`target_` for inhibit rules) as
    matcher strings, validated as the rules will read them."""
    found: list[str] = []
    try:
        for key, regex in (("match", False), ("match_re", True)):
            if isinstance(raw.get(prefix + key), dict):
                found += [str(m) for m in matchers_from_mapping(
                    {k: str(v) for k, v in raw[prefix + key].items()}, regex=regex)]
        for text in raw.get(prefix + "matchers") or []:
            found += [str(m) for m in parse_matchers(str(text))]
    except ValueError as e:
        raise ConfigError([f"{where}: {e}"]) from None
    return found


def _var(receiver: str) -> str:
    """The environment variable holding a receiver's routing key."""
    return "PD_KEY_" + re.sub(r"[^A-Z0-9]", "_", receiver.upper())


def _group_by(group_by: list[str]) -> str:
    return "[...]" if group_by == ["..."] else "[" + ", ".join(group_by) + "]"


def _yaml(v: Any) -> str:
    """A time interval field as flow YAML (JSON is YAML)."""
    return orjson.dumps(v).decode()


def _walk(route: _Route) -> list[_Route]:
    return [route, *(r for c in route.children for r in _walk(c))]


def import_alertmanager(doc: Any, source: str = "alertmanager.yml") -> tuple[str, list[str]]:
    """The rules file for Alertmanager configuration `doc`, and what it could not express."""
    if not isinstance(doc, dict) or not isinstance(doc.get("route"), dict):
        raise ConfigError([f"{source}: not an Alertmanager configuration (no route:)"])
    im = _Importer(doc)
    im.source = source
    im.receivers()
    root = im.route(doc["route"], None, "route")
    if doc["route"].get("continue"):
        im.notes.append("route: continue on the root route (Alertmanager refuses it; it means "
                        "nothing there)")
    for key in sorted(set(doc) - {"route", "receivers", "inhibit_rules", "time_intervals",
                                  "mute_time_intervals"}):
        what = {"global": "settings of receivers and of Alertmanager itself",
                "templates": "Go notification templates (rules use Jinja templates)"}.get(key, "")
        im.notes.append(f"{key}{': ' + what if what else ''}")
    lines = [f"# Imported from {source} by `alert-proxy import`: Alertmanager's route tree,",
             "# in the order Alertmanager tries it. Routing keys are read from the environment.",
             "#"]
    defaults = ["defaults:"]
    if root.receiver:
        defaults.append(f"  routing_key: {im.key(root.receiver)}")
    else:
        im.notes.append("route: no default receiver (Alertmanager requires one): an alert no route "
                        "matches pages nobody")
    defaults += im.page_lines(root.receiver, None, "  ")
    defaults.append(f"  group_by: {_group_by(root.group_by)}")
    defaults += [f"  {k}: {v}" for k, v in root.timings.items()]
    body = [line for c in root.children for line in im.rules(c, [], root, "  ")]
    inhibit = im.inhibit()
    maintenance = im.maintenance(_walk(root)[1:])
    if root.mute:
        im.notes.append("route: mute_time_intervals on the root route")
    lines += ["# Not imported (the proxy cannot express it):" if im.notes else
              "# Everything was imported."]
    lines += [f"#   - {n}" for n in im.notes]
    lines += ["", *defaults]
    if body:
        lines += ["", "rules:", *body]
    if inhibit:
        lines += ["", "inhibit:", *inhibit]
    if maintenance:
        lines += ["", "maintenance:", *maintenance]
    return "\n".join(lines) + "\n", im.notes

