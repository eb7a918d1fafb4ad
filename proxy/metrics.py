"""Prometheus metrics, `alert_proxy_` prefix, base units, bounded labels only.

Label `key` is always a routing key's *name* (the env var it came from, or its masked
form), never the key."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

__all__ = ["Metrics"]


class Metrics:
    """Every labelled counter whose label values are known up front starts at 0 (so that
    `increase()` sees the first event); per-key series start when the key is first seen
    (`key_seen`)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # no `_created` series: a gauge per counter and histogram that says when the process
        # first counted it (119 of 307 lines of /metrics), which no dashboard reads
        disable_created_metrics()  # type: ignore[no-untyped-call]
        r = self.registry = registry or CollectorRegistry()
        p = "alert_proxy_"
        self.alerts_received = Counter(p + "alerts_received", "Alerts accepted, by source.",
                                       ["source"], registry=r)
        self.requests_rejected = Counter(p + "requests_rejected", "Requests refused with a 4xx "
                                         "or 503, by source and status.", ["source", "status"], registry=r)
        self.fields_dropped = Counter(p + "alert_fields_dropped", "Alert fields left out because "
                                      "PagerDuty would refuse them, by field (starts_at: not an "
                                      "ISO 8601 time).", ["field"], registry=r)
        self.fields_dropped.labels("starts_at")
        self.suppressed = Counter(p + "alerts_suppressed", "Alerts not grouped, by reason.",
                                  ["reason"], registry=r)
        self.events_sent = Counter(p + "events_sent", "Calls to PagerDuty by action and outcome "
                                   "(success, invalid, rate_limited, server_error, network).",
                                   ["action", "outcome"], registry=r)
        self.retries = Counter(p + "retries", "Events given back to the outbox for a retry.",
                               ["reason"], registry=r)
        self.rate_limited = Counter(p + "rate_limited_responses", "429 answers from PagerDuty.",
                                    ["key"], registry=r)
        self.budget_waits = Counter(p + "rate_limit_waits", "Times the sender waited for the "
                                    "per-key budget.", ["key"], registry=r)
        self.dead_letters = Counter(p + "dead_letters", "Events moved to the dead letters.",
                                    ["action"], registry=r)
        self.upstream_latency = Histogram(p + "upstream_latency_seconds", "PagerDuty answer time.",
                                          registry=r, buckets=(.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self.groups_open = Gauge(p + "groups_open", "Open groups (windows).", registry=r)
        self.outbox_depth = Gauge(p + "outbox_depth", "Events waiting to be sent.", ["key"], registry=r)
        self.outbox_oldest = Gauge(p + "outbox_oldest_age_seconds", "Age of the oldest waiting "
                                   "event.", ["key"], registry=r)
        self.dead_letter_depth = Gauge(p + "dead_letter_depth", "Events in the dead letters.", registry=r)
        self.flushes = Counter(p + "group_flushes", "Groups flushed, by what they sent "
                               "(trigger, resolve, none, transient).", ["result"], registry=r)
        self.reload_ok = Gauge(p + "config_last_reload_successful", "1 if the last rules reload "
                               "succeeded.", registry=r)
        self.reload_time = Gauge(p + "config_last_reload_success_timestamp_seconds",
                                 "When the rules last loaded.", registry=r)
        self.store_errors = Counter(p + "store_errors", "Store operations that failed.",
                                    ["op"], registry=r)
        self.loop_lag = Gauge(p + "event_loop_lag_seconds", "The longest the event loop was late "
                              "in the last 5 s (a step that held it).", registry=r)
        self.flush_lag = Gauge(p + "flush_lag_seconds", "How long the oldest group due has waited "
                               "to be flushed (now - its due time; 0 when none waits).", registry=r)
        self.build_info = Gauge(p + "build_info", "The running version (always 1).",
                                ["version", "python"], registry=r)
        self._keys: set[str] = set()
        self.webhooks = Counter(p + "pagerduty_webhooks", "PagerDuty webhooks received, by event "
                                "type and verdict (applied, duplicate, stale, foreign, ignored, "
                                "rejected).", ["type", "verdict"], registry=r)
        self.remediations = Counter(p + "remediations", "Remediation calls, by outcome (ok, failed, "
                                    "timeout, error).", ["outcome"], registry=r)
        self.pd_sync_changes = Counter(p + "pagerduty_sync_changes", "Groups whose incident state "
                                       "a sync with PagerDuty's REST API corrected (a webhook "
                                       "lost or late).", registry=r)
        self.pd_sync_last = Gauge(p + "pagerduty_sync_last_success_timestamp_seconds", "When a "
                                  "sync with PagerDuty's REST API last finished.", registry=r)
        self.actions = Counter(p + "actions", "Actions on PagerDuty incident events, by action and "
                               "outcome (queued, done, retry, dead).", ["action", "outcome"], registry=r)
        self.pd_notes = Counter(p + "pagerduty_notes", "Notes added to incidents' timelines, by "
                                "outcome (added, failed).", ["outcome"], registry=r)
        ack_buckets = (60, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
        self.time_to_ack = Histogram(p + "time_to_acknowledge_seconds", "From the first page to "
                                     "its acknowledgement in PagerDuty.", registry=r,
                                     buckets=ack_buckets)
        self.time_to_resolve = Histogram(p + "time_to_resolve_seconds", "From the first page to a "
                                         "resolve in PagerDuty.", registry=r, buckets=ack_buckets)

    def start_at_zero(self, alert_sources: tuple[str, ...], request_sources: tuple[str, ...],
                      actions: tuple[str, ...], outcomes: tuple[str, ...], reasons: tuple[str, ...],
                      remediation: tuple[str, ...], retry_reasons: tuple[str, ...],
                      webhook_types: tuple[str, ...]) -> None:
        """Every label set a counter can take, at 0, so that `increase()` and alerts on a
        rate see the first one (only meaningful ones: no retry for a success)."""
        for s in alert_sources:
            self.alerts_received.labels(s)
        for s in request_sources:
            for status in ("400", "401", "403", "404", "408", "413", "415", "503"):
                self.requests_rejected.labels(s, status)
        for a in actions:
            self.dead_letters.labels(a)
            for o in outcomes:
                self.events_sent.labels(a, o)
        for o in retry_reasons:
            self.retries.labels(o)
        for r in reasons:
            self.suppressed.labels(r)
        for r in remediation:
            self.remediations.labels(r)
        for op in ("flush", "observe", "watch", "outbox_keys", "send"):
            self.store_errors.labels(op)
        for result in ("trigger", "resolve", "none", "transient"):
            self.flushes.labels(result)
        for t in webhook_types:
            for verdict in ("applied", "duplicate", "stale", "foreign", "ignored"):
                self.webhooks.labels(t, verdict)
        self.webhooks.labels("other", "ignored")
        self.webhooks.labels("-", "rejected")

    def key_seen(self, name: str) -> None:
        """A routing key's series start at 0 the first time it is seen."""
        if name not in self._keys:
            self._keys.add(name)
            self.rate_limited.labels(name)
            self.budget_waits.labels(name)
