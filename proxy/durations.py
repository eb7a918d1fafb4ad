"""Durations in Prometheus's grammar, as Alertmanager reads them: whole numbers, units in
decreasing order, each at most once: 30s, 5m, 4h, 1h30m, 1d, 2w, 1y, 500ms. `1.5m` and
`30s5m` are errors, as they are in Alertmanager; `0` is 0."""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["header_seconds", "parse_duration"]

_UNITS = (("y", 365 * 86400.0), ("w", 604800.0), ("d", 86400.0), ("h", 3600.0), ("m", 60.0),
          ("s", 1.0), ("ms", 0.001))
_GRAMMAR = re.compile("".join(rf"(?:(\d+){u})?" for u, _ in _UNITS))


def parse_duration(text: object) -> float:
    """Seconds in `text`; ValueError naming the expected form otherwise."""
    if isinstance(text, int) and not isinstance(text, bool) and text == 0:
        return 0.0
    if isinstance(text, str) and text.strip() == "0":
        return 0.0
    m = _GRAMMAR.fullmatch(text.strip()) if isinstance(text, str) and text.strip() else None
    if m is None or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 4h, 1h30m)")
    return sum(int(n) * seconds for n, (_, seconds) in zip(m.groups(), _UNITS, strict=True) if n)


def header_seconds(headers: Mapping[str, str] | None, name: str = "Retry-After") -> float | None:
    """Seconds an HTTP answer's header gives (Retry-After, PagerDuty's ratelimit-reset);
    None if absent or not a number of seconds (a Retry-After date)."""
    raw = headers.get(name) if headers else None
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None
