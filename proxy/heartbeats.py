"""Heartbeats (dead man's switches) at run time: an alert matching a heartbeat (e.g.
kube-prometheus's always-firing `Watchdog`) or a POST to /v1/heartbeat/<name> is an
arrival; the alert never pages itself. When none arrived for `every + grace`, one trigger
goes out; at the next arrival, its resolve.

The state is the store's (semantics.heartbeat, applied atomically): it survives restarts,
and with several replicas exactly one of them sends each trigger and each resolve. A
heartbeat never seen is counted from its first check after start. Rules: rules/heartbeats.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson

from proxy.clock import Clock
from proxy.model import OutEvent
from proxy.redact import mask
from proxy.rules import RuleSet
from proxy.rules.types import Heartbeat
from proxy.silences import iso
from proxy.store import Store

__all__ = ["Heartbeats", "dedup_key", "words"]

log = logging.getLogger("alert_proxy")


def words(seconds: float) -> str:
    """A duration as on-call reads it: 7m, 1h5m, 45s."""
    s = round(seconds)
    h, m, sec = s // 3600, s % 3600 // 60, s % 60
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


def dedup_key(hb: Heartbeat) -> str:
    return f"alert-proxy/heartbeat/{hb.name}"


class Heartbeats:
    def __init__(self, store: Store, clock: Clock, rules: Callable[[], RuleSet],
                 on_enqueue: Callable[[], None]) -> None:
        self.store, self.clock, self.rules, self.on_enqueue = store, clock, rules, on_enqueue

    async def seen(self, hb: Heartbeat, now: float) -> None:
        """An arrival: its resolve goes out if it had paged."""
        if await self.store.heartbeat(hb.name, "seen", now, hb.every + hb.grace):
            await self.store.enqueue([self._event(hb, "resolve", now, 0.0)])
            log.info("heartbeat %s is back: resolved", hb.name)
            self.on_enqueue()

    async def check(self) -> None:
        """Page each heartbeat silent for every + grace (once: the store decides who sends)."""
        now = self.clock.now()
        for hb in self.rules().heartbeats.values():
            limit = hb.every + hb.grace
            if await self.store.heartbeat(hb.name, "check", now, limit):
                last = (await self.store.heartbeats()).get(hb.name, (now - limit, True))[0]
                await self.store.enqueue([self._event(hb, "trigger", now, now - last)])
                log.warning("heartbeat %s silent for %s: paged", hb.name, words(now - last))
                self.on_enqueue()

    def _event(self, hb: Heartbeat, action: str, now: float, silent_for: float) -> OutEvent:
        body: dict[str, object] = {"routing_key": hb.routing_key, "event_action": action,
                                   "dedup_key": dedup_key(hb)}
        if action == "trigger":
            ctx = {"name": hb.name, "every": words(hb.every), "grace": words(hb.grace),
                   "silent_for": words(silent_for)}
            summary = (hb.summary.render(ctx) if hb.summary else "").strip() or \
                f"no heartbeat {hb.name} for {words(silent_for)} (expected every {words(hb.every)})"
            body["payload"] = {"summary": summary[:1024], "source": "alert-proxy",
                               "severity": hb.severity, "component": "heartbeat",
                               "custom_details": {"heartbeat": hb.name, "every": words(hb.every),
                                                  "grace": words(hb.grace),
                                                  "last_arrival": iso(now - silent_for)}}
        return OutEvent(routing_key=hb.routing_key, dedup_key=dedup_key(hb), action=action,  # type: ignore[arg-type]
                        severity=hb.severity, body=orjson.dumps(body),
                        key_name=hb.key_name or mask(hb.routing_key), enqueued_at=now)
