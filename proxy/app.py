"""The running proxy: HTTP in, the pipeline, the flusher and the sender.

The whole stage order is `Proxy.accept`: normalize (ingest parsers) -> rules -> record
in the store's windows; `Proxy.flush_due` turns due windows into outbox events; the
Sender delivers them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from proxy import correlate, ingest
from proxy.auth import Auth
from proxy.clock import Clock, SystemClock
from proxy.errors import ConfigError, InputError, StoreError
from proxy.ingest.fields import fingerprint_of
from proxy.metrics import Metrics
from proxy.model import Alert, OutEvent
from proxy.redact import mask
from proxy.rules import RuleSet, load_rules
from proxy.rules.schema import rule_files
from proxy.sender import Budget, Sender
from proxy.store import Entry, Resolved, Store

__all__ = ["MAX_BODY", "Proxy", "Settings"]

log = logging.getLogger("alert_proxy")
MAX_BODY = 512_000  # what PagerDuty and Alertmanager allow for one event
_JSON_TYPES = ("application/json", "text/json")


@dataclass
class Settings:
    rules: list[str]
    upstream: str = "https://events.pagerduty.com"
    dry_run: bool = False
    auth: Auth = field(default_factory=lambda: Auth({}))
    budget: Budget = field(default_factory=Budget)
    watch_interval: float = 2.0  # seconds between rule file change checks (0: off)
    flush_poll: float = 0.05
    send_timeout: float = 10.0
    retry_base: float = 1.0


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _pd_error(e: InputError) -> web.Response:
    """PagerDuty's own answer bodies for a refused event."""
    if e.errors == ["JSON parse error"]:
        return _json({"status": "Unrecognized object", "message": "Event object format is "
                      "unrecognized", "errors": e.errors}, e.status)
    return _json({"status": "invalid event", "message": "Event object is invalid",
                  "errors": e.errors}, e.status)


def _error(e: InputError) -> web.Response:
    return _json({"status": "error", "message": e.errors[0], "errors": e.errors}, e.status)


class Proxy:
    def __init__(self, settings: Settings, store: Store, clock: Clock | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings, self.store = settings, store
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.rules = RuleSet(load_rules(settings.rules))
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(time.time())
        self._mtimes = self._rule_mtimes()
        self.sender = Sender(store, settings.upstream, self.clock, self.metrics,
                             budget=settings.budget, timeout=settings.send_timeout,
                             dry_run=settings.dry_run, retry_base=settings.retry_base)
        self._tasks: list[asyncio.Task[None]] = []

    # -- the pipeline ------------------------------------------------------------
    async def accept(self, alerts: list[Alert]) -> None:
        """Rules, then the windows: the alerts are in the store when this returns.

        Firing alerts go to the groups their rules choose; resolved alerts go to every
        open group that holds them, whatever the rules say now (a drop, a reload or a
        maintenance window never swallows a resolve)."""
        entries: list[Entry] = []
        resolved: list[Resolved] = []
        marks: list[tuple[str, str]] = []
        for alert in alerts:
            if alert.status == "resolved":
                resolved.append(Resolved(alert.fingerprint, orjson.dumps(alert.to_dict()).decode(),
                                         bool(alert.labels)))
                continue
            if self.rules.inhibit:
                marks += [(m, alert.fingerprint) for m in self.rules.source_marks(alert.labels)]
            placements, reason = self.rules.place(alert)
            if reason:
                self.metrics.suppressed.labels(reason).inc()
            if not placements:
                continue
            data = alert.to_dict()
            for p in placements:
                r = p.rule
                data["placed_severity"] = p.severity
                entries.append(Entry(
                    group_key=p.group_key, meta=p.group_meta(), fingerprint=alert.fingerprint,
                    alert_json=orjson.dumps(data).decode(), group_wait=r.group_wait,
                    group_interval=r.group_interval,
                    resolve_wait=r.group_interval if r.resolve_wait is None else r.resolve_wait,
                    max_alerts=r.max_alerts))
        await self.store.record(entries, resolved, self.clock.now(), marks)
        if alerts:
            self.metrics.alerts_received.labels(alerts[0].source).inc(len(alerts))

    async def muted(self, g: correlate.Group, now: float) -> dict[str, str]:
        """Firing alerts of `g` that must not page now, with the reason."""
        out: dict[str, str] = {}
        wanted: dict[str, list[str]] = {}
        for fp, a in g.alerts.items():
            if a["status"] != "firing":
                continue
            if self.rules.in_maintenance(a["labels"], now):
                out[fp] = "maintenance"
            elif marks := self.rules.target_marks(a["labels"]):
                wanted[fp] = marks
        if wanted:
            sources = await self.store.marked(sorted({m for ms in wanted.values() for m in ms}))
            for fp, ms in wanted.items():
                if any(sources.get(m, set()) - {fp} for m in ms):
                    out[fp] = "inhibited"
        return out

    async def flush_due(self) -> int:
        """Flush every group that is due; returns how many events were enqueued."""
        now = self.clock.now()
        sent = 0
        for key in await self.store.claim_due(now, lease=10.0, limit=1000):
            for _ in range(10):  # a concurrent change means: decide again on fresh state
                g = await self.store.load(key)
                if g is None:
                    break
                muted = await self.muted(g, now)
                f = correlate.decide(g, self.rules.rule(g.rule), now, muted)
                events = correlate.events_for(g, f, self.rules, now, muted)
                correlate.apply(g, f, now)
                if await self.store.commit(g, f.delete, events):
                    result = "/".join(f.actions) or ("transient" if f.delete else "none")
                    self.metrics.flushes.labels(result).inc()
                    for reason in muted.values():
                        self.metrics.suppressed.labels(reason).inc()
                    if events:
                        sent += len(events)
                        log.info("group flushed", extra={"fields": {
                            "dedup_key": g.key, "rule": g.rule, "key": g.key_name,
                            "actions": f.actions, "firing": len(g.firing()),
                            "alerts": len(g.alerts)}})
                    break
        if sent:
            self.sender.kick()
        return sent

    # -- background work ------------------------------------------------------------
    async def _loop(self, what: str, every: float, step: Callable[[], Awaitable[Any]]) -> None:
        while True:
            try:
                await step()
            except StoreError as e:
                self.metrics.store_errors.labels(what).inc()
                log.warning("store unavailable", extra={"fields": {"during": what, "error": str(e)}})
                await asyncio.sleep(min(1.0, every * 10))
            except Exception:
                log.exception("background step failed", extra={"fields": {"during": what}})
            await asyncio.sleep(every)

    async def _observe(self) -> None:
        stats = await self.store.stats()
        self.metrics.groups_open.set(stats.groups_open)
        now = self.clock.now()
        depth: dict[str, int] = {}
        oldest: dict[str, float] = {}
        for name, enqueued_at in stats.pending:
            depth[name] = depth.get(name, 0) + 1
            oldest[name] = max(oldest.get(name, 0.0), now - enqueued_at)
        self.metrics.outbox_depth.clear()
        self.metrics.outbox_oldest.clear()
        for k, n in depth.items():
            self.metrics.outbox_depth.labels(k).set(n)
            self.metrics.outbox_oldest.labels(k).set(oldest[k])
        self.metrics.dead_letter_depth.set(stats.dead)

    async def _watch(self) -> None:
        if self._rule_mtimes() != self._mtimes:
            self.reload()

    async def start(self, _app: web.Application | None = None) -> None:
        s = self.settings
        self._tasks = [
            asyncio.create_task(self._loop("flush", s.flush_poll, self.flush_due)),
            asyncio.create_task(self.sender.run()),
            asyncio.create_task(self._loop("observe", 2.0, self._observe)),
        ]
        if s.watch_interval > 0:
            self._tasks.append(asyncio.create_task(self._loop("watch", s.watch_interval, self._watch)))

    async def stop(self, _app: web.Application | None = None) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.store.close()

    # -- rules reload -------------------------------------------------------------
    def _rule_mtimes(self) -> dict[str, float]:
        out = {}
        for p in rule_files(self.settings.rules):
            with contextlib.suppress(OSError):
                out[str(p)] = p.stat().st_mtime
        for loc in self.settings.rules:
            with contextlib.suppress(OSError):
                out[loc] = Path(loc).stat().st_mtime
        return out

    def reload(self) -> list[str]:
        """Load the rules again; on error keep the old ones. Returns the errors."""
        self._mtimes = self._rule_mtimes()
        try:
            self.rules = RuleSet(load_rules(self.settings.rules))
        except ConfigError as e:
            self.metrics.reload_ok.set(0)
            log.error("rules reload failed; keeping the previous rules",
                      extra={"fields": {"errors": e.errors}})
            return e.errors
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(time.time())
        log.info("rules reloaded", extra={"fields": {"rules": len(self.rules.rules)}})
        return []

    # -- HTTP ---------------------------------------------------------------------
    async def _body(self, request: web.Request, source: str) -> Any:
        """Auth, content type, size, JSON: InputError (4xx) naming the problem."""
        if not self.settings.auth.allows(source, request.headers.get("Authorization")):
            raise InputError([f"missing or wrong credentials for {source} (Authorization header)"], 401)
        ctype = request.content_type
        if ctype not in _JSON_TYPES and not ctype.endswith("+json"):
            raise InputError([f"Content-Type must be application/json (got {ctype or 'none'})"], 415)
        if (request.content_length or 0) > MAX_BODY:
            raise InputError([f"body is larger than {MAX_BODY} bytes"], 413)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise InputError([f"body is larger than {MAX_BODY} bytes"], 413) from None
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InputError(["JSON parse error"]) from None

    async def _webhook(self, request: web.Request, source: str,
                       parse: Callable[[Any], list[Alert]]) -> web.Response:
        try:
            alerts = parse(await self._body(request, source))
            await self.accept(alerts)
        except InputError as e:
            self.metrics.requests_rejected.labels(source, str(e.status)).inc()
            if e.errors == ["JSON parse error"]:
                e = InputError(["body is not valid JSON"], e.status)
            return _error(e)
        except StoreError as e:
            return self._unavailable(source, e)
        return _json({"status": "success", "alerts": len(alerts)})

    def _unavailable(self, source: str, e: StoreError) -> web.Response:
        self.metrics.requests_rejected.labels(source, "503").inc()
        log.warning("store unavailable; asking the sender to retry",
                    extra={"fields": {"source": source, "error": str(e)}})
        return _json({"status": "error", "message": "store unavailable, retry later",
                      "errors": [str(e)]}, 503)

    async def h_alertmanager(self, request: web.Request) -> web.Response:
        return await self._webhook(request, "alertmanager", ingest.alertmanager.parse)

    async def h_datadog(self, request: web.Request) -> web.Response:
        return await self._webhook(request, "datadog", ingest.datadog.parse)

    async def h_enqueue(self, request: web.Request) -> web.Response:
        try:
            ev = ingest.events_v2.parse(await self._body(request, "events"))
            await self.accept_event(ev)
        except InputError as e:
            self.metrics.requests_rejected.labels("events_v2", str(e.status)).inc()
            return _pd_error(e)
        except StoreError as e:
            return self._unavailable("events_v2", e)
        return _json({"status": "success", "message": "Event processed", "dedup_key": ev.dedup_key},
                     202)

    async def accept_event(self, ev: ingest.events_v2.Event) -> None:
        """An Events v2 event: a trigger is an alert; acknowledge and resolve follow up."""
        if ev.alert is not None and ev.action == "trigger":
            await self.accept([ev.alert])
        else:
            await self._followup(ev.routing_key, ev.dedup_key, ev.action)

    async def _followup(self, routing_key: str, dedup_key: str, action: str) -> None:
        """acknowledge/resolve for a sender's dedup_key: reach the groups that hold it; one
        the proxy never saw goes through as it is (it may predate the proxy)."""
        fp = "ev:" + fingerprint_of(routing_key, dedup_key)
        groups = await self.store.groups_of(fp)
        now = self.clock.now()
        if action == "resolve" and groups:
            alert = Alert(fingerprint=fp, status="resolved", labels={}, source="events_v2",
                          dedup_key=dedup_key, routing_key=routing_key)
            await self.accept([alert])
            return
        if groups:
            events = [OutEvent(g.routing_key, g.key, "acknowledge", "info",
                               correlate.render_followup(g.routing_key, g.key, action),
                               key_name=g.key_name, enqueued_at=now)
                      for g in groups if g.triggered]
        else:
            events = [OutEvent(routing_key, dedup_key, action, "info",  # type: ignore[arg-type]
                               correlate.render_followup(routing_key, dedup_key, action),
                               key_name=mask(routing_key), enqueued_at=now)]
        self.metrics.alerts_received.labels("events_v2").inc()
        await self.store.enqueue(events)
        self.sender.kick()

    async def h_change(self, request: web.Request) -> web.Response:
        try:
            body = ingest.events_v2.parse_change(await self._body(request, "events"))
            rk = body["routing_key"]
            now = self.clock.now()
            await self.store.enqueue([OutEvent(rk, f"change:{now}:{id(body)}", "change", "info",
                                               orjson.dumps(body), key_name=mask(rk), enqueued_at=now)])
            self.sender.kick()
        except InputError as e:
            self.metrics.requests_rejected.labels("events_v2", str(e.status)).inc()
            return _pd_error(e)
        except StoreError as e:
            return self._unavailable("events_v2", e)
        return _json({"status": "success", "message": "Change event processed"}, 202)

    async def h_healthz(self, _request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def h_readyz(self, _request: web.Request) -> web.Response:
        try:
            await self.store.ping()
        except StoreError as e:
            return _json({"status": "unavailable", "store": str(e)}, 503)
        return _json({"status": "ready", "store": self.store.url.split("@")[-1]})

    async def h_reload(self, request: web.Request) -> web.Response:
        if not self.settings.auth.allows("admin", request.headers.get("Authorization")):
            return _error(InputError(["missing or wrong credentials for admin"], 401))
        errors = self.reload()
        if errors:
            return _json({"status": "error", "message": "rules did not load; the previous rules "
                          "stay in force", "errors": errors}, 400)
        return _json({"status": "success", "rules": len(self.rules.rules)})

    async def h_groups(self, request: web.Request) -> web.Response:
        if not self.settings.auth.allows("admin", request.headers.get("Authorization")):
            return _error(InputError(["missing or wrong credentials for admin"], 401))
        out = []
        for g in sorted(await self.store.groups(), key=lambda g: g.opened_at):
            d = g.to_dict()
            d.pop("routing_key")
            d["dedup_key"] = d.pop("key")
            d["alerts"] = list(g.alerts.values())
            out.append(d)
        return _json({"groups": out})

    async def h_outbox(self, request: web.Request) -> web.Response:
        if not self.settings.auth.allows("admin", request.headers.get("Authorization")):
            return _error(InputError(["missing or wrong credentials for admin"], 401))
        return _json({"pending": [_shown(e) for e in await self.store.pending()],
                      "dead": [_shown(e) for e in await self.store.dead_letters()]})

    async def h_dead_retry(self, request: web.Request) -> web.Response:
        if not self.settings.auth.allows("admin", request.headers.get("Authorization")):
            return _error(InputError(["missing or wrong credentials for admin"], 401))
        raw = request.query.get("seq")
        try:
            seqs = [int(s) for s in raw.split(",")] if raw else None
        except ValueError:
            return _error(InputError(["'seq' must be comma-separated numbers"]))
        n = await self.store.requeue_dead(seqs)
        self.sender.kick()
        return _json({"status": "success", "requeued": n})

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[_json_errors])
        app.add_routes([
            web.post("/v1/alertmanager", self.h_alertmanager),
            web.post("/v1/datadog", self.h_datadog),
            web.post("/v2/enqueue", self.h_enqueue),
            web.post("/v2/change/enqueue", self.h_change),
            web.get("/healthz", self.h_healthz),
            web.get("/readyz", self.h_readyz),
            web.post("/-/reload", self.h_reload),
            web.get("/api/v1/groups", self.h_groups),
            web.get("/api/v1/outbox", self.h_outbox),
            web.post("/api/v1/deadletter/retry", self.h_dead_retry),
            web.get("/metrics", make_aiohttp_handler(self.metrics.registry)),
        ])
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        return app


def _shown(e: OutEvent) -> dict[str, Any]:
    return {"seq": e.seq, "key": e.key_name, "dedup_key": e.dedup_key, "action": e.action,
            "severity": e.severity, "attempts": e.attempts, "last_error": e.last_error,
            "enqueued_at": e.enqueued_at, "not_before": e.not_before}


@web.middleware
async def _json_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """aiohttp's own refusals (404, 405) as JSON naming the problem."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status >= 400:
            return _json({"status": "error", "message": f"{e.reason}: {request.method} {request.path}",
                          "errors": [e.reason]}, e.status)
        raise
