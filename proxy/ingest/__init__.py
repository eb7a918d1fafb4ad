"""Ingest: one parser per source, each `parse(body) -> list[Alert]` raising InputError.

Parsers are pure: they take the decoded JSON and return Alerts; app.py does the HTTP."""

from __future__ import annotations

from proxy.ingest import alertmanager, datadog, events_v2

__all__ = ["alertmanager", "datadog", "events_v2"]
