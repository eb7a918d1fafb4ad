"""The proxy's link to PagerDuty's REST API, when a token is given: the sync loop (every
--pagerduty-sync-interval and at start), the notes loop, and `POST /api/v1/sync` (admin)
to sync now. Without a token none of it runs and the path answers 409 saying so."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from proxy.clock import Clock
from proxy.http import ADMIN, json_response, source
from proxy.incidents import Incidents
from proxy.metrics import Metrics
from proxy.notes import Notes
from proxy.pdrest import API_URL, APIError, PagerDutyAPI
from proxy.pdsync import Sync
from proxy.rules import RuleSet
from proxy.store import Store

__all__ = ["PagerDutyLink", "RestSettings"]

log = logging.getLogger("alert_proxy")


@dataclass
class RestSettings:
    token: str = ""  # --pagerduty-api-token: "" turns the REST link off
    from_email: str = ""  # --pagerduty-from: the user notes are written as
    url: str = API_URL
    sync_interval: float = 300.0


class PagerDutyLink:
    def __init__(self, settings: RestSettings, store: Store, incidents: Incidents,
                 rules: Callable[[], RuleSet], clock: Clock, metrics: Metrics) -> None:
        self.api: PagerDutyAPI | None = None
        self.notes: Notes | None = None
        self.sync: Sync | None = None
        if settings.token:
            self.api = PagerDutyAPI(settings.token, settings.from_email, settings.url)
            self.notes = Notes(store, rules, self.api, clock, metrics)
            self.sync = Sync(store, incidents, self.api, metrics, clock, self.notes)

    def delivered(self, dedup_key: str) -> None:
        """The sender delivered a trigger."""
        if self.notes is not None:
            self.notes.want(dedup_key)

    async def sync_step(self) -> None:
        if self.sync is None:
            return
        try:
            changes = await self.sync.run()
        except APIError as e:
            log.warning("PagerDuty sync failed; trying again at the next interval", extra={
                "fields": {"error": str(e)}})
            return
        if changes:
            log.info("PagerDuty sync done", extra={"fields": {"changed": len(changes)}})

    async def notes_step(self) -> None:
        if self.notes is not None:
            await self.notes.step()

    async def close(self) -> None:
        if self.api is not None:
            await self.api.close()

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/v1/sync", self.h_sync)]

    @source(ADMIN)
    async def h_sync(self, _request: web.Request) -> web.Response:
        if self.sync is None:
            return json_response({"status": "error", "message": "no PagerDuty REST API token is "
                                  "configured (--pagerduty-api-token)", "errors": ["no token"]}, 409)
        try:
            changes = await self.sync.run()
        except APIError as e:
            return json_response({"status": "error", "message": f"PagerDuty's REST API: {e}",
                                  "errors": [str(e)]}, 502)
        return json_response({"status": "success", "changes": [
            {"dedup_key": c.dedup_key, "incident": c.incident, "was": c.was, "now": c.now, "by": c.by}
            for c in changes]})
