"""The noise figures: what came in, what paged, what was suppressed and why, how long
pages took to be acknowledged and resolved.

Stages count into a `Tally` of this process (a dict: no I/O on the hot path); it is added
to the store's hourly counters every few seconds (`flush`), where every replica's counts
meet. `summarize` turns hourly counters into the figures the API, the report and the
console show. Fields are "metric|label":

    in|<source>  in_rule|<rule>  in_service|<service>  in_alertname|<alertname>   deliveries
    fired  resolved                                             transitions (store.Recorded)
    page|<why>  page_rule|<rule>  page_service|<service>      triggers enqueued (why first:
    incident_rule|<rule>  incident_service|<service>          an incident opened; the rest
                                                                repeat or update one)
    sent|<action>  sent_key|<key name>  429|<key name>         PagerDuty's answers
    suppressed|<reason>                                         dropped, inhibited, ...
    ttp_sum ttp_n  tta_sum tta_n  ttr_sum ttr_n                 time to page/ack/resolve (s)
    tta_sum_rule|<rule>  tta_n_rule|<rule>  (ttr_, _service)    the same per rule and service
"""

from __future__ import annotations

import time
from collections import defaultdict

from proxy.jsontypes import JsonObject
from proxy.model import Group
from proxy.store.base import CountStore

__all__ = ["SUPPRESS_REASONS", "Tally", "parse_since", "service_of", "summarize"]

SUPPRESS_REASONS = ("dropped", "silenced", "inhibited", "maintenance", "transient", "flapping",
                    "remediated", "folded")


def service_of(g: Group) -> str:
    """The service a group's figures count under: its `service` group label, else its
    first firing alert's, else "-"."""
    return g.group_labels.get("service") or next(
        (a.labels.get("service", "") for a in g.alerts.values() if a.firing), "") or "-"


class Tally:
    """This process's counts since the last flush, by hour."""

    def __init__(self) -> None:
        self._hours: dict[int, defaultdict[str, float]] = {}

    def add(self, field: str, n: float = 1.0, at: float | None = None) -> None:
        hour = int((at if at is not None else time.time()) // 3600)
        c = self._hours.get(hour)
        if c is None:
            c = self._hours[hour] = defaultdict(float)
        c[field] += n

    def merge(self, counts: dict[str, float], at: float | None = None) -> None:
        hour = int((at if at is not None else time.time()) // 3600)
        c = self._hours.get(hour)
        if c is None:
            c = self._hours[hour] = defaultdict(float)
        for field, n in counts.items():
            c[field] += n

    async def flush(self, store: CountStore) -> None:
        """Add what was counted to the store; kept for the next flush if the store fails."""
        hours, self._hours = self._hours, {}
        try:
            for hour, counts in sorted(hours.items()):
                await store.add_counts(hour, dict(counts))
                del hours[hour]
        finally:
            for hour, counts in hours.items():
                for field, n in counts.items():
                    self.add(field, n, hour * 3600.0)


def parse_since(text: str) -> float:
    """`24h`, `7d`: seconds; ValueError naming the form otherwise."""
    from proxy.durations import parse_duration

    seconds = parse_duration(text)
    if seconds <= 0 or seconds > 14 * 86400:
        raise ValueError(f"since: {text!r} must be between 1h and 14d")
    return seconds


def _ratio(a: float, b: float) -> str:
    if not b:
        return f"{a:g}:0"
    return f"{a / b:.0f}:1" if a >= b else f"1:{b / a:.0f}" if a else "0:1"


def _mean(counts: dict[str, float], key: str) -> dict[str, float | None]:
    n = counts.get(f"{key}_n", 0.0)
    return {"mean_s": round(counts[f"{key}_sum"] / n, 1) if n else None, "n": int(n)}


def _by(counts: dict[str, float], metric: str) -> dict[str, float]:
    prefix = metric + "|"
    return {f[len(prefix):]: v for f, v in counts.items() if f.startswith(prefix)}


def summarize(hourly: dict[int, dict[str, float]], since_hour: int, until_hour: int) -> JsonObject:
    """The figures of hours [since_hour, until_hour]: totals, per hour, per rule, service,
    alertname and routing key, suppression by reason, times to page/ack/resolve."""
    total: defaultdict[str, float] = defaultdict(float)
    hours = []
    for h in range(since_hour, until_hour + 1):
        c = hourly.get(h, {})
        for f, v in c.items():
            total[f] += v
        hours.append({"hour": h * 3600, "in": int(sum(_by(c, "in").values())),
                      "pages": int(sum(_by(c, "page").values()))})
    alerts_in = sum(_by(total, "in").values())
    pages = sum(_by(total, "page").values())

    def table(metric_in: str, metric_page: str, name: str) -> list[JsonObject]:
        ins, outs = _by(total, metric_in), _by(total, metric_page)
        opened = _by(total, f"incident_{name}")
        means = {w: (_by(total, f"{w}_sum_{name}"), _by(total, f"{w}_n_{name}")) for w in ("tta", "ttr")}

        def mean(w: str, k: str) -> float | None:
            s, n = means[w]
            return round(s[k] / n[k], 1) if n.get(k) else None

        rows = [{name: k, "in": int(ins.get(k, 0)), "pages": int(outs.get(k, 0)),
                 "incidents": int(opened.get(k, 0)), "ratio": _ratio(ins.get(k, 0), outs.get(k, 0)),
                 "mtta_s": mean("tta", k), "mttr_s": mean("ttr", k)}
                for k in set(ins) | set(outs)]
        return sorted(rows, key=lambda r: (-r["in"], -r["pages"], r[name]))

    keys = [{"key": k, "sent": int(v), "429s": int(total.get(f"429|{k}", 0))}
            for k, v in sorted(_by(total, "sent_key").items())]
    return {
        "since": since_hour * 3600, "until": (until_hour + 1) * 3600,
        "alerts_in": int(alerts_in), "pages_out": int(pages),
        "alerts_fired": int(total.get("fired", 0)), "alerts_resolved": int(total.get("resolved", 0)),
        # alerts that started firing (not redeliveries: Alertmanager re-sends every alert of a
        # group each group_interval) per page
        "noise_ratio": _ratio(total.get("fired", 0), pages),
        "incidents_opened": int(total.get("page|first", 0)),
        "repeat_triggers": int(pages - total.get("page|first", 0) - total.get("page|storm", 0)),
        "by_source": {k: int(v) for k, v in sorted(_by(total, "in").items())},
        "pages_by_why": {k: int(v) for k, v in sorted(_by(total, "page").items())},
        "sent_by_action": {k: int(v) for k, v in sorted(_by(total, "sent").items())},
        "suppressed": {r: int(total.get(f"suppressed|{r}", 0)) for r in SUPPRESS_REASONS},
        "by_rule": table("in_rule", "page_rule", "rule"),
        "by_service": table("in_service", "page_service", "service"),
        "top_alertnames": [{"alertname": k, "in": int(v)} for k, v in
                           sorted(_by(total, "in_alertname").items(), key=lambda kv: -kv[1])[:10]],
        "keys": keys,
        "time_to_page": _mean(total, "ttp"), "time_to_acknowledge": _mean(total, "tta"),
        "time_to_resolve": _mean(total, "ttr"),
        "hours": hours,
    }
