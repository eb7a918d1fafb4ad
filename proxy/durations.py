"""Durations as Prometheus writes them: 30s, 5m, 4h, 1h30m, 1d, 500ms."""

from __future__ import annotations

import re

__all__ = ["parse_duration"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")


def parse_duration(text: object) -> float:
    """Seconds in `text`; ValueError naming the expected form otherwise. `0` is allowed."""
    if isinstance(text, (int, float)) and not isinstance(text, bool) and text == 0:
        return 0.0
    if not isinstance(text, str) or not _WHOLE.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not a duration (e.g. 30s, 5m, 4h)")
    return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text.strip()))
