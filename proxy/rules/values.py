"""The values a rules file holds, each checked as it is read: durations, severities,
templates (compiled here, so an unknown name or filter is an error at load), the
`remediate:` and `storm:` blocks, matchers. A bad value raises ValueError (its message
becomes `file:line: key: message`), or is told to the file's context (`ctx.err`)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from proxy.durations import parse_duration
from proxy.model import SEVERITIES
from proxy.redact import mask
from proxy.rules.matchers import Matcher, matchers_from_mapping, parse_matchers
from proxy.rules.templates import ALERT_NAMES, ENRICH_NAMES, JsonBody, Template, compile_template
from proxy.rules.types import MAX_FLAP_CHANGES, Flap, Remediate, Storm
from proxy.rules.yamlfile import Ctx as _Ctx
from proxy.rules.yamlfile import LDict, LList

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


def routing_key(value: Any) -> tuple[str, str]:
    """A routing key as given (`${VAR}` from the environment), checked; with the name that
    logs show instead of it."""
    rk, name = _substitute(_str(value))
    if rk and (len(rk) != 32 or not rk.isalnum() or not rk.isascii()):
        given = f"{value} gives a {len(rk)}-character value" if _ENV_REF.search(str(value)) \
            else f"the value given ({len(rk)} characters)"
        raise ValueError(f"{given}: not a PagerDuty routing key (32 alphanumeric characters)")
    return rk, name


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
    return http_call(v, ENRICH_NAMES, ("wait",))


def http_call(v: Any, names: tuple[str, ...], extra: tuple[str, ...] = ()) -> Remediate:
    """An HTTP call given in the rules (`remediate:`, an action's `webhook:`): url, method,
    headers, body, timeout (and `extra` keys), its templates over `names`."""
    known = ("url", "method", "headers", "body", "timeout", *extra)
    if not isinstance(v, dict) or "url" not in v:
        raise ValueError("must be a mapping with at least url")
    unknown = set(v) - set(known)
    if unknown:
        raise ValueError(f"unknown key {min(unknown)!r} (known: {', '.join(known)})")
    secrets: list[str] = []

    def sub(text: Any, what: str, escape: str = "") -> Template:
        value, _ = _substitute(_str(text))
        secrets.extend(os.environ[m.group(1)] for m in _ENV_REF.finditer(str(text))
                       if os.environ.get(m.group(1)))
        try:
            return _template(value, names, escape=escape)
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
                     wait=_positive_duration(v["wait"]) if "wait" in v else 0.0, secrets=tuple(secrets))


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


def _template_list(v: Any) -> list[Template]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(t, str) and t.strip() for t in v):
        raise ValueError("must be a list of templates (one note each)")
    return [_template(t) for t in v]


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
    "notes": ("notes", _template_list),
}


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

