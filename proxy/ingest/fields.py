"""Small field checks shared by the parsers; each problem is a string naming its field."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import orjson

from proxy.jsontypes import JsonObject

__all__ = ["fingerprint_of", "is_time", "link_list", "opt_str", "str_map"]


def str_map(value: Any, where: str, errors: list[str]) -> dict[str, str]:
    """A mapping of strings to strings (numbers and booleans are turned into strings)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(f"'{where}' must be an object of strings")
        return {}
    out: dict[str, str] = {}
    for k, v in value.items():
        if isinstance(v, str):
            out[k] = v
        elif isinstance(v, (int, float, bool)):
            out[k] = str(v).lower() if isinstance(v, bool) else str(v)
        else:
            errors.append(f"'{where}.{k}' must be a string")
    return out


def opt_str(obj: JsonObject, key: str, where: str, errors: list[str]) -> str:
    v = obj.get(key)
    if v is None:
        return ""
    if not isinstance(v, str):
        errors.append(f"'{where}' must be a string")
        return ""
    return v


def fingerprint_of(*parts: object) -> str:
    """A stable 16-hex-digit fingerprint of `parts` (the same on every replica)."""
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def link_list(value: Any, where: str, required: str, errors: list[str]) -> list[dict[str, str]]:
    """A list of objects with a string `required` field (links: href, images: src), every
    other known field a string too, as PagerDuty requires; an image's src is https."""
    if value is None:
        return []
    if not isinstance(value, list):
        errors.append(f"'{where}' must be an array")
        return []
    known = ("href", "text") if required == "href" else ("src", "href", "alt")
    out: list[dict[str, str]] = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get(required), str):
            errors.append(f"'{where}[{i}].{required}' is missing or not a string")
            continue
        bad = [k for k in known if k in item and not isinstance(item[k], str)]
        if bad:
            errors.append(f"'{where}[{i}].{bad[0]}' is invalid (should be a string)")
            continue
        if required == "src" and not item["src"].startswith("https://"):
            errors.append(f"'{where}[{i}].src' is invalid (images must be served over https)")
            continue
        out.append({k: v for k, v in item.items() if isinstance(v, str)})
    return out


def is_time(text: str) -> bool:
    """An ISO 8601 date and time, as PagerDuty takes for `payload.timestamp` (RFC 3339 with
    nanoseconds, as Prometheus writes it, included)."""
    if len(text) < 16 or text[4] != "-" or text[10] not in "Tt ":
        return False
    if text[-5] in "+-" and ":" not in text[-5:]:
        text = text[:-2] + ":" + text[-2:]  # PagerDuty's own examples: +0000
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True
