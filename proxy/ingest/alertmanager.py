"""Alertmanager webhook payload, version 4: every entry of `alerts[]` becomes one Alert."""

from __future__ import annotations

from typing import Any

from proxy.errors import InputError
from proxy.ingest.fields import fingerprint_of, opt_str, str_map
from proxy.model import Alert

__all__ = ["parse"]

_ZERO_TIME = "0001-01-01T00:00:00Z"
_TEXT_FIELDS = ("startsAt", "endsAt", "fingerprint", "generatorURL")
_is_str = str.__instancecheck__  # all(map(_is_str, ...)): half the time of a generator, per alert


def parse(body: Any) -> list[Alert]:
    if not isinstance(body, dict):
        raise InputError(["body must be a JSON object (Alertmanager webhook, version 4)"])
    errors: list[str] = []
    version = body.get("version")
    if version is not None and version != "4":
        errors.append(f"'version' is {version!r}; only webhook version \"4\" is understood")
    raw = body.get("alerts")
    if not isinstance(raw, list):
        raise InputError(errors + ["'alerts' is missing or not an array"])
    alerts: list[Alert] = []
    for i, a in enumerate(raw):
        if not isinstance(a, dict):
            errors.append(f"'alerts[{i}]' must be an object")
            continue
        status = a.get("status")
        if status not in ("firing", "resolved"):
            errors.append(f"'alerts[{i}].status' must be \"firing\" or \"resolved\"")
            continue
        labels = a.get("labels")
        if type(labels) is not dict or not all(map(_is_str, labels.values())):
            if labels is None:
                errors.append(f"'alerts[{i}].labels' is missing")
            labels = str_map(labels, f"alerts[{i}].labels", errors)
        if not labels and a.get("labels") == {}:
            errors.append(f"'alerts[{i}].labels' is empty (an alert needs at least one label, such "
                          "as alertname, to be grouped and routed)")
        annotations = a.get("annotations") or {}
        if type(annotations) is not dict or not all(map(_is_str, annotations.values())):
            annotations = str_map(annotations, f"alerts[{i}].annotations", errors)
        starts, ends = a.get("startsAt") or "", a.get("endsAt") or ""  # (no loop: per alert)
        fp, gen = a.get("fingerprint") or "", a.get("generatorURL") or ""
        if not (type(starts) is str and type(ends) is str and type(fp) is str and type(gen) is str):
            starts, ends, fp, gen = (opt_str(a, k, f"alerts[{i}].{k}", errors) for k in _TEXT_FIELDS)
        fp = fp or fingerprint_of(labels)
        alerts.append(
            Alert(
                fingerprint="am:" + fp,
                status=status,
                labels=labels,
                source="alertmanager",
                annotations=annotations,
                summary=annotations.get("summary") or labels.get("alertname", ""),
                severity=labels.get("severity"),
                starts_at=starts,
                ends_at="" if ends == _ZERO_TIME else ends,
                links=[{"href": gen, "text": "Source"}] if gen else [],
            )
        )
    if errors:
        raise InputError(errors)
    return alerts
