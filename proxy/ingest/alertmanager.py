"""Alertmanager webhook payload, version 4: every entry of `alerts[]` becomes one Alert."""

from __future__ import annotations

from typing import Any

from proxy.errors import InputError
from proxy.ingest.fields import fingerprint_of, opt_str, str_map
from proxy.model import Alert

__all__ = ["parse"]

_ZERO_TIME = "0001-01-01T00:00:00Z"


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
        where = f"alerts[{i}]"
        if not isinstance(a, dict):
            errors.append(f"'{where}' must be an object")
            continue
        status = a.get("status")
        if status not in ("firing", "resolved"):
            errors.append(f"'{where}.status' must be \"firing\" or \"resolved\"")
            continue
        labels = str_map(a.get("labels"), f"{where}.labels", errors)
        if not labels and "labels" not in a:
            errors.append(f"'{where}.labels' is missing")
        annotations = str_map(a.get("annotations"), f"{where}.annotations", errors)
        starts = opt_str(a, "startsAt", f"{where}.startsAt", errors)
        ends = opt_str(a, "endsAt", f"{where}.endsAt", errors)
        fp = opt_str(a, "fingerprint", f"{where}.fingerprint", errors) or fingerprint_of(labels)
        gen = opt_str(a, "generatorURL", f"{where}.generatorURL", errors)
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
