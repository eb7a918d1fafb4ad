"""The admin API: reload the rules, read the groups, the outbox and the noise figures,
send the dead letters again. Every path here is guarded by http.admin_middleware
(credentials when configured, else loopback Host and Origin only)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from proxy.clock import Clock
from proxy.errors import InputError
from proxy.http import ADMIN, json_response, source
from proxy.jsontypes import JsonObject
from proxy.model import OutEvent
from proxy.rules.live import LiveRules
from proxy.stats import Tally, parse_since, summarize
from proxy.store import Store

__all__ = ["Admin"]


@dataclass
class Admin:
    store: Store
    clock: Clock
    live: LiveRules
    tally: Tally
    reload: Callable[[], list[str]]  # the errors of the new rules ([]: they are in force)
    kick: Callable[[], None]  # wake the sender
    dead_actions: Callable[[], Awaitable[list[JsonObject]]]  # actions' dead jobs

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/-/reload", self.h_reload),
            web.get("/api/v1/groups", self.h_groups),
            web.get("/api/v1/outbox", self.h_outbox),
            web.get("/api/v1/stats", self.h_stats),
            web.post("/api/v1/deadletter/retry", self.h_dead_retry),
        ]

    @source(ADMIN)
    async def h_reload(self, _request: web.Request) -> web.Response:
        errors = self.reload()
        if errors:
            return json_response({"status": "error", "message": "rules did not load; the previous "
                                  "rules stay in force", "errors": errors}, 400)
        return json_response({"status": "success", "rules": len(self.live.current.rules)})

    @source(ADMIN)
    async def h_groups(self, _request: web.Request) -> web.Response:
        groups = sorted(await self.store.groups(), key=lambda g: g.opened_at)
        return json_response({"groups": [g.to_dict() for g in groups]})

    @source(ADMIN)
    async def h_outbox(self, _request: web.Request) -> web.Response:
        return json_response({"pending": [_shown(e) for e in await self.store.pending()],
                              "dead": [_shown(e) for e in await self.store.dead_letters()],
                              "dead_actions": await self.dead_actions()})

    async def stats(self, since: str) -> JsonObject:
        """The noise figures of the last `since` (e.g. 24h, 7d), with what this process
        counted but has not yet written."""
        try:
            seconds = parse_since(since)
        except ValueError as e:
            raise InputError([str(e)]) from None
        await self.tally.flush(self.store)
        now = self.clock.now()
        until, first = int(now // 3600), int((now - seconds) // 3600) + 1
        return summarize(await self.store.counts(first), first, until)

    @source(ADMIN)
    async def h_stats(self, request: web.Request) -> web.Response:
        return json_response(await self.stats(request.query.get("since", "24h")))

    @source(ADMIN)
    async def h_dead_retry(self, request: web.Request) -> web.Response:
        raw = request.query.get("seq")
        try:
            seqs = [int(s) for s in raw.split(",")] if raw else None
        except ValueError:
            raise InputError(["'seq' must be comma-separated numbers"]) from None
        n = await self.store.requeue_dead(seqs)
        self.kick()
        return json_response({"status": "success", "requeued": n})


def _shown(e: OutEvent) -> JsonObject:
    return {"seq": e.seq, "key": e.key_name, "dedup_key": e.dedup_key, "action": e.action,
            "severity": e.severity, "attempts": e.attempts, "last_error": e.last_error,
            "enqueued_at": e.enqueued_at, "not_before": e.not_before}
