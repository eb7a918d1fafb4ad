"""Suppression that depends on time or on other alerts: maintenance windows and inhibition.

Both mute *triggers* only: they are applied when a group is flushed, to its firing
alerts; a resolve for an incident PagerDuty already has always goes out."""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from proxy.rules.matchers import Matcher, matches_all

__all__ = ["WEEKDAYS", "Inhibit", "Maintenance"]

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


@dataclass(slots=True)
class Maintenance:
    """Active when every given field matches (any item within a field), as Alertmanager's
    time_intervals; `times` may cross midnight (22:00-06:00)."""

    name: str
    matchers: list[Matcher] = field(default_factory=list)
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    weekdays: set[int] = field(default_factory=set)  # 0 = Monday
    times: list[tuple[time, time]] = field(default_factory=list)
    dates: list[tuple[date, date]] = field(default_factory=list)  # inclusive
    ranges: list[tuple[datetime, datetime]] = field(default_factory=list)  # absolute
    # Alertmanager's time_intervals fields: days of the month (negative counts from the
    # end, -1 is the last day), months (1-12) and years, each a list of inclusive ranges
    days_of_month: list[tuple[int, int]] = field(default_factory=list)
    months: set[int] = field(default_factory=set)
    years: list[tuple[int, int]] = field(default_factory=list)
    rules: frozenset[str] = frozenset()  # only alerts in these rules' groups (empty: any)

    def active(self, now: float) -> bool:
        local = datetime.fromtimestamp(now, self.tz)
        if self.weekdays and local.weekday() not in self.weekdays:
            return False
        if self.months and local.month not in self.months:
            return False
        if self.years and not any(s <= local.year <= e for s, e in self.years):
            return False
        if self.days_of_month and not _day_of_month(local, self.days_of_month):
            return False
        if self.times and not any(_within(local.time(), s, e) for s, e in self.times):
            return False
        if self.dates and not any(s <= local.date() <= e for s, e in self.dates):
            return False
        return not self.ranges or any(s <= local < e for s, e in self.ranges)

    def applies(self, labels: Mapping[str, str], rule: str = "") -> bool:
        return (not self.rules or rule in self.rules) and matches_all(self.matchers, labels)


def _day_of_month(local: datetime, ranges: list[tuple[int, int]]) -> bool:
    """As Alertmanager: negative days count from the month's end; a range is clamped to
    the month (1:31 covers February)."""
    last = calendar.monthrange(local.year, local.month)[1]
    for s, e in ranges:
        s = s + last + 1 if s < 0 else s
        e = e + last + 1 if e < 0 else e
        if max(s, 1) <= local.day <= min(e, last):
            return True
    return False


def _within(t: time, start: time, end: time) -> bool:
    if start <= end:
        return start <= t < end
    return t >= start or t < end  # crosses midnight


@dataclass(slots=True)
class Inhibit:
    """A firing alert matching `source` mutes alerts matching `target` that have the same
    values for the `equal` labels (Alertmanager's inhibit_rules). An alert never mutes
    itself."""

    source: list[Matcher]
    target: list[Matcher]
    equal: tuple[str, ...]
    where: str = ""

    @property
    def ident(self) -> str:
        """Stable across reloads while the rule is unchanged."""
        text = "|".join([",".join(map(str, self.source)), ",".join(map(str, self.target)),
                         ",".join(self.equal)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def key(self, labels: Mapping[str, str]) -> str:
        """The mark a source leaves and a target looks for."""
        vals = "\x00".join(labels.get(k, "") for k in self.equal)
        return f"{self.ident}:{hashlib.sha256(vals.encode()).hexdigest()[:24]}"
