"""`heartbeats:` in a rules file: dead man's switches.

    heartbeats:
      - name: prometheus-prod
        match: {alertname: Watchdog, prometheus: prod}   # or matchers: / match_re:
        every: 5m          # expected at least this often
        grace: 2m          # then this long more before it pages
        severity: critical # the default
        routing_key: ${PD_ROUTING_KEY}   # default: the defaults' routing key
        summary: "no Watchdog from {{ name }} for {{ silent_for }}"

A heartbeat without matchers is fed only by `POST /v1/heartbeat/<name>` (cron jobs)."""

from __future__ import annotations

from proxy.rules.types import Heartbeat, Rule
from proxy.rules.values import (
    _duration,
    _positive_duration,
    _rule_matchers,
    _severity,
    _template,
    _unknown,
    routing_key,
)
from proxy.rules.yamlfile import Ctx, LDict

HEARTBEAT_NAMES = ("name", "every", "grace", "silent_for")
_KEYS = ("name", "match", "matchers", "match_re", "every", "grace", "severity", "routing_key", "summary")


def load_heartbeat(ctx: Ctx, obj: LDict, i: int, defaults: Rule, seen: dict[str, str]) -> Heartbeat | None:
    name = obj.get("name")
    where = f"heartbeats {name!r}: " if isinstance(name, str) else f"heartbeats[{i}]: "
    _unknown(ctx, obj, where, _KEYS)
    ok = True
    if not isinstance(name, str) or not name.strip() or "/" in name:
        ctx.err(obj, "name" if "name" in obj else None, f"{where}name is required (no '/': it is a URL path)")
        ok = False
    elif name in seen:
        ctx.err(obj, "name", f"{where}name already used at {seen[name]}")
        ok = False
    else:
        seen[name] = f"{ctx.path}:{obj.line}"

    def get(key: str, check, default):  # type: ignore[no-untyped-def]
        nonlocal ok
        if key not in obj:
            return default
        try:
            return check(obj[key])
        except ValueError as e:
            ctx.err(obj, key, f"{where}{key}: {e}")
            ok = False
            return default

    every = get("every", _positive_duration, None)
    if every is None and "every" not in obj:
        ctx.err(obj, None, f"{where}every is required (e.g. every: 5m)")
        ok = False
    grace = get("grace", _duration, 0.0)
    severity = get("severity", _severity, "critical")
    summary = get("summary", lambda v: _template(v, HEARTBEAT_NAMES), None)
    rk, key_name = get("routing_key", routing_key, (defaults.routing_key or "", defaults.key_name))
    if not rk:
        ctx.err(obj, None, f"{where}routing_key is required (none in defaults either)")
        ok = False
    matchers = tuple(_rule_matchers(ctx, obj, where))
    if not ok:
        return None
    return Heartbeat(name=str(name), matchers=matchers, every=float(every), grace=float(grace),
                     routing_key=rk, key_name=key_name, severity=severity, summary=summary)
