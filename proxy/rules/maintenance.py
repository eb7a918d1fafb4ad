"""`maintenance:` windows, read as Alertmanager's time_intervals are: weekdays, times of
day, dates, days of the month, months, years and absolute ranges, in a time zone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from proxy.rules.suppress import WEEKDAYS, Maintenance
from proxy.rules.values import _rule_matchers, _unknown
from proxy.rules.yamlfile import Ctx as _Ctx
from proxy.rules.yamlfile import LDict


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


