"""The running proxy: HTTP paths and the lifecycle of the background work (flusher,
sender, observer, rule watcher, heartbeat checks). The accept path is pipeline.py; a
flush's stages, in order, are stages.py."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import platform
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from proxy import __version__, ingest
from proxy.actions import Actions
from proxy.admin import Admin
from proxy.amapi import AlertmanagerApi
from proxy.auth import Auth
from proxy.clock import Clock, SystemClock
from proxy.console import Console, View
from proxy.errors import InputError, NotJSON, StoreError, Unauthorized
from proxy.http import (
    ADMIN,
    MAX_BODY,
    Hosts,
    admin_middleware,
    error_middleware,
    json_response,
    read_body,
    read_json,
    source,
)
from proxy.ingest import pagerduty, sns, webhook
from proxy.logs import Health
from proxy.metrics import Metrics
from proxy.model import Alert
from proxy.pdlink import PagerDutyLink, RestSettings
from proxy.pipeline import Pipeline
from proxy.rules.live import LiveRules
from proxy.sender import RETRY_REASONS, Outcome, Sender
from proxy.shutdown import Budget
from proxy.stats import SUPPRESS_REASONS, Tally
from proxy.store import Store, Window

__all__ = ["Proxy", "Settings"]

log = logging.getLogger("alert_proxy")
T = TypeVar("T")


@dataclass
class Settings:
    rules: list[str]
    upstream: str = "https://events.pagerduty.com"
    dry_run: bool = False
    auth: Auth = field(default_factory=lambda: Auth({}))
    window: Window = field(default_factory=Window)
    watch_interval: float = 2.0  # seconds between rule file change checks (0: off)
    flush_poll: float = 0.05
    send_timeout: float = 10.0
    retry_base: float = 1.0
    shutdown: Budget = field(default_factory=Budget)  # SIGTERM to exit (proxy/shutdown.py)
    pagerduty_secrets: list[str] = field(default_factory=list)  # webhooks v3 signing secrets
    body_timeout: float = 10.0  # seconds a request's headers, then its body, may take to arrive
    max_groups: int = 1_000_000  # open groups at most (an alert opening one more: 503)
    hosts: list[str] = field(default_factory=list)  # --listen hosts and --external-host names
    metrics_open: bool = False  # /metrics without admin credentials even when they are set
    rest: RestSettings = field(default_factory=RestSettings)  # PagerDuty's REST API (pdlink.py)


class Proxy:
    def __init__(self, settings: Settings, store: Store, clock: Clock | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings, self.store = settings, store
        self.clock = clock or SystemClock()
        self.metrics = metrics or Metrics()
        self.metrics.build_info.labels(__version__, platform.python_version()).set(1)
        self.metrics.start_at_zero(alert_sources=("alertmanager", "datadog", "events_v2"),
                                   request_sources=("alertmanager", "datadog", "events", "pagerduty", "webhook"),
                                   actions=("trigger", "acknowledge", "resolve", "change"),
                                   outcomes=tuple(Outcome), reasons=SUPPRESS_REASONS,
                                   remediation=("ok", "failed", "timeout", "error"),
                                   retry_reasons=RETRY_REASONS, webhook_types=pagerduty.INCIDENT_EVENTS)
        self.store_health = Health(log, "store")
        self.live = LiveRules(settings.rules)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(self.live.loaded_at)
        self.tally = Tally()
        self.sender = Sender(store, settings.upstream, self.clock, self.metrics,
                             window=settings.window, timeout=settings.send_timeout,
                             dry_run=settings.dry_run, retry_base=settings.retry_base,
                             tally=self.tally, store_health=self.store_health)
        self.pipeline = Pipeline(self.live.current, store, self.clock, self.metrics,
                                 on_enqueue=self.sender.kick, tally=self.tally,
                                 max_groups=settings.max_groups)
        self.pd = PagerDutyLink(settings.rest, store, self.pipeline.incidents, lambda: self.live.current,
                                self.clock, self.metrics)
        self.sender.on_delivered = self.pd.delivered
        self.actions = Actions(store, lambda: self.live.current, self.clock, self.metrics)
        self.sns = sns.SnsVerifier()
        self.started = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self._sending: asyncio.Task[None] | None = None
        self._change_seq = itertools.count()

    # -- background work ------------------------------------------------------------
    async def _loop(self, what: str, every: float, step: Callable[[], Awaitable[Any]],
                    behind: Callable[[], bool] = lambda: False, store: bool = True) -> None:
        """Run `step` every `every` seconds, or again at once while `behind()` says work is
        waiting (a flush that used its budget with groups still due). `store`: the step
        uses the store (its success says the store is back)."""
        while True:
            try:
                await step()
                if store:
                    self.store_health.ok()
                if behind():
                    await asyncio.sleep(0)
                    continue
            except StoreError as e:
                self.metrics.store_errors.labels(what).inc()
                self.store_health.failed(str(e), during=what)
                await asyncio.sleep(min(1.0, every * 10))
            except Exception:
                log.exception("background step failed", extra={"fields": {"during": what}})
            await asyncio.sleep(every)

    async def _observe(self) -> None:
        await self.tally.flush(self.store)
        now = self.clock.now()
        stats = await self.store.stats(now, self.settings.window)
        self.metrics.groups_open.set(stats.groups_open)
        self.metrics.outbox_depth.clear()
        self.metrics.outbox_oldest.clear()
        for name, k in stats.keys.items():
            self.metrics.outbox_depth.labels(name).set(k.depth)
            self.metrics.outbox_oldest.labels(name).set(max(0.0, now - k.oldest_enqueued_at) if k.depth else 0)
        self.metrics.dead_letter_depth.set(stats.dead)
        self.metrics.flush_lag.set(max(0.0, now - stats.oldest_due) if stats.oldest_due else 0.0)

    async def _lag(self) -> None:
        """Measure how late the event loop wakes up: the worst over each 5 s."""
        worst, since = 0.0, time.monotonic()
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.1)
            worst = max(worst, time.monotonic() - t - 0.1)
            if time.monotonic() - since >= 5.0:
                self.metrics.loop_lag.set(round(worst, 4))
                worst, since = 0.0, time.monotonic()

    async def _watch(self) -> None:
        if self.live.changed():
            self.reload()

    async def start(self, _app: web.Application | None = None) -> None:
        s = self.settings
        self._tasks = [
            asyncio.create_task(self._loop("flush", s.flush_poll, self.pipeline.flush_due,
                                           lambda: self.pipeline.behind)),
            asyncio.create_task(self._loop("observe", 2.0, self._observe)),
            # (store=False: with no heartbeats it never calls the store, so its success says
            # nothing of it; its failures are still the store's)
            asyncio.create_task(self._loop("heartbeats", 1.0, self.pipeline.heartbeats.check,
                                           store=False)),
            asyncio.create_task(self._loop("silences", 1.0, self.pipeline.silences.refresh,
                                           store=False)),
            asyncio.create_task(self._lag()),
            # actions on incident events: a loop of their own, never in the way of pages
            asyncio.create_task(self._loop("actions", 1.0, self.actions.step)),
        ]
        if self.pd.api is not None:  # (store=False: each keeps its own account of failures)
            self._tasks += [asyncio.create_task(self._loop("pd-sync", s.rest.sync_interval,
                                                           self.pd.sync_step, store=False)),
                            asyncio.create_task(self._loop("notes", 1.0, self.pd.notes_step, store=False))]
        self._sending = asyncio.create_task(self.sender.run())
        if s.watch_interval > 0:
            self._tasks.append(asyncio.create_task(self._loop("watch", s.watch_interval, self._watch,
                                                              store=False)))

    async def stop(self, _app: web.Application | None = None) -> None:
        """Stop flushing and sending within the shutdown timeout, whatever the backlog and
        whether PagerDuty answers: what is in flight then is given back to the outbox."""
        budget = self.settings.shutdown
        deadline = time.monotonic() + budget.work
        closing = deadline - budget.closing  # the last part: counts, clients, the store

        def left(until: float = deadline) -> float:
            return max(0.1, until - time.monotonic())

        for t in self._tasks:
            t.cancel()
        # A flush cut short lets the commits it has under way finish (bounded all the same).
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=left(closing))
        calls = list(self.pipeline.remediations.calls)
        if calls:  # a remediation call cut short is "unknown" at the end of its wait
            await asyncio.wait(calls, timeout=left(closing) / 2)
            for t in calls:
                t.cancel()
        await self.sender.stop(closing)
        if self._sending is not None:
            self._sending.cancel()
            await asyncio.wait([self._sending], timeout=0.1)
        for closer in (self.tally.flush(self.store), self.sns.close(), self.pd.close(), self.actions.close(),
                       self.store.close()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closer, timeout=left())

    def reload(self) -> list[str]:
        """Load the rules again; on error keep the old ones. Returns the errors."""
        errors = self.live.reload()
        if errors:
            self.metrics.reload_ok.set(0)
            return errors
        self.pipeline.rules = self.live.current
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(self.live.loaded_at)
        return []

    # -- ingest -------------------------------------------------------------------------
    async def _alerts(self, request: web.Request, source: str,
                      parse: Callable[[Any], list[Alert]]) -> web.Response:
        body = await read_json(request, self.settings.auth, source, self.settings.body_timeout)
        alerts = await _parsed(request, parse, body)
        await self.pipeline.accept_shared(alerts)
        return json_response({"status": "success", "alerts": len(alerts)})

    @source("alertmanager")
    async def h_alertmanager(self, request: web.Request) -> web.Response:
        return await self._alerts(request, "alertmanager", ingest.alertmanager.parse)

    @source("datadog")
    async def h_datadog(self, request: web.Request) -> web.Response:
        return await self._alerts(request, "datadog", ingest.datadog.parse)

    @source("events")
    async def h_enqueue(self, request: web.Request) -> web.Response:
        ev = ingest.events_v2.parse(await read_json(request, self.settings.auth, "events",
                                                    self.settings.body_timeout))
        await self.pipeline.accept_event(ev)
        return json_response({"status": "success", "message": "Event processed",
                              "dedup_key": ev.dedup_key}, 202)

    @source("events")
    async def h_change(self, request: web.Request) -> web.Response:
        body = ingest.events_v2.parse_change(await read_json(request, self.settings.auth, "events",
                                                             self.settings.body_timeout))
        await self.pipeline.change(body, next(self._change_seq))
        return json_response({"status": "success", "message": "Change event processed"}, 202)

    def _named(self, request: web.Request, family: str, named: Mapping[str, T], what: str,
               section: str) -> tuple[str, T]:
        """A path's `{name}`, its credentials (`family:name`), and what the rules name so
        (404 naming the rules' section when nothing is)."""
        name = request.match_info["name"]
        if not self.settings.auth.allows(f"{family}:{name}", request.headers.get("Authorization")):
            raise Unauthorized([f"missing or wrong credentials for {family}:{name} (Authorization header)"])
        found = named.get(name)
        if found is None:
            raise InputError([f"no {what} is named {name!r} (the rules' {section}: section "
                              "names them)"], 404)
        return name, found

    @source("webhook")
    async def h_webhook(self, request: web.Request) -> web.Response:
        """A generic JSON sender, mapped to alerts by the `sources:` entry of its name; one
        behind Amazon SNS is verified first (and its subscription confirmed)."""
        name, mapping = self._named(request, "webhook", self.pipeline.rules.sources, "webhook source",
                                    "sources")
        raw = await read_body(request, self.settings.body_timeout, text_ok=mapping.sns is not None)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise NotJSON() from None
        envelope = None
        if mapping.sns is not None:
            env = sns.envelope(body, request.headers.get("x-amz-sns-message-type"))
            await self.sns.verify(mapping.sns, env)
            if env["Type"] != "Notification":
                confirmed = env["Type"] == "SubscriptionConfirmation" and \
                    await self.sns.confirm(mapping.sns, env)
                if env["Type"] == "UnsubscribeConfirmation":
                    log.warning("SNS unsubscribed this source from its topic: no more alarms come "
                                "from it", extra={"fields": {"source": name, "topic": env["TopicArn"]}})
                return json_response({"status": "success", "type": env["Type"], "confirmed": confirmed})
            try:
                body = orjson.loads(env["Message"])
            except orjson.JSONDecodeError:
                raise NotJSON(f"'Message' is not JSON (source {name!r} maps JSON messages)") from None
            envelope = {k: env.get(k, "") for k in ("Subject", "TopicArn", "MessageId", "Timestamp")}
        alerts = await _parsed(request, webhook.parse, mapping, body, envelope)
        await self.pipeline.accept_shared(alerts)
        return json_response({"status": "success", "alerts": len(alerts)})

    @source("pagerduty")
    async def h_pagerduty(self, request: web.Request) -> web.Response:
        """PagerDuty webhooks v3: verified, then applied to the group of its incident_key;
        a repeated X-Webhook-Id changes nothing (see Pipeline.incident)."""
        raw = await read_body(request, self.settings.body_timeout)
        try:
            pagerduty.verify(self.settings.pagerduty_secrets,
                             request.headers.get("X-PagerDuty-Signature"), raw)
            ev = pagerduty.parse(raw)
        except InputError:
            self.metrics.webhooks.labels("-", "rejected").inc()
            raise
        kind = ev.event_type if ev else "other"
        queued: list[str] = []
        if ev is None:
            verdict = "ignored"
        else:
            queued = await self.actions.queue(ev)  # (stored before the 2xx; once per event id)
            verdict = await self.pipeline.incident(ev)
            wid = request.headers.get("X-Webhook-Id") or ev.id
            if not await self.store.first_time("pagerduty:" + wid, self.clock.now(), 48 * 3600.0) \
                    and verdict == "applied":
                verdict = "duplicate"
        self.metrics.webhooks.labels(kind if kind.startswith("incident.") else "other", verdict).inc()
        return json_response({"status": "success", "verdict": verdict, "actions": queued})

    @source("heartbeat")
    async def h_heartbeat(self, request: web.Request) -> web.Response:
        """An arrival of a heartbeat (a cron job's `curl -X POST .../v1/heartbeat/backup`)."""
        name, hb = self._named(request, "heartbeat", self.pipeline.rules.heartbeats, "heartbeat",
                               "heartbeats")
        with contextlib.suppress(TimeoutError):  # whatever it says (a cron job's curl sends none)
            await asyncio.wait_for(request.content.read(65536), self.settings.body_timeout)
        await self.pipeline.heartbeats.seen(hb, self.clock.now())
        return json_response({"status": "success", "heartbeat": name})

    # -- health -------------------------------------------------------------------------
    async def h_healthz(self, _request: web.Request) -> web.Response:
        return json_response({"status": "ok"})

    async def h_readyz(self, _request: web.Request) -> web.Response:
        try:
            await self.store.ping()
        except StoreError as e:
            return json_response({"status": "unavailable", "store": str(e)}, 503)
        return json_response({"status": "ready", "store": self.store.url.split("@")[-1]})

    def app(self) -> web.Application:
        # keepalive_timeout: aiohttp closes a connection that has not sent a whole request
        # this long after it opened or after its last answer: a request whose headers do not
        # arrive within --body-timeout (a slow-header attack) holds nothing for long.
        app = web.Application(client_max_size=MAX_BODY, handler_args={
            "auto_decompress": False, "keepalive_timeout": self.settings.body_timeout}, middlewares=[
            error_middleware(self.metrics, self.store_health), admin_middleware(self.settings.auth, Hosts(self.settings.hosts))])
        metrics = source(ADMIN if self.settings.auth.configured(ADMIN) and not self.settings.metrics_open
                          else "metrics")(make_aiohttp_handler(self.metrics.registry))
        admin = Admin(self.store, self.clock, self.live, self.tally, self.reload, self.sender.kick,
                      self.actions.dead)
        app.add_routes([
            web.post("/v1/alertmanager", self.h_alertmanager),
            web.post("/v1/datadog", self.h_datadog),
            web.post("/v2/enqueue", self.h_enqueue),
            web.post("/v2/change/enqueue", self.h_change),
            web.post("/v1/pagerduty", self.h_pagerduty),
            web.post("/v1/webhook/{name}", self.h_webhook),
            web.post("/v1/heartbeat/{name}", self.h_heartbeat),
            web.get("/healthz", self.h_healthz),
            web.get("/readyz", self.h_readyz),
            web.get("/-/healthy", self.h_healthz),  # Alertmanager's probe paths, for its users' probes
            web.get("/-/ready", self.h_readyz),
            *admin.routes(),
            *self.pd.routes(),
            *AlertmanagerApi(self.pipeline.silences, self.store, self.clock, self.started).routes(),
            web.get("/metrics", metrics),
            *Console(View(store=self.store, clock=self.clock, live=self.live,
                          window=self.settings.window, body_timeout=self.settings.body_timeout,
                          stats=admin.stats, kick=self.sender.kick,
                          silences=self.pipeline.silences)).routes(),
        ])
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        return app


BIG_BODY = 64 * 1024  # bytes: a body this large holds hundreds of alerts


async def _parsed(request: web.Request, parse: Callable[..., list[Alert]], *args: Any) -> list[Alert]:
    """A large body is parsed in a thread: the event loop gets its turn back every 5 ms (the
    GIL's switch interval) instead of waiting for thousands of alerts' templates (8,000
    items of a `sources:` mapping take ~0.5 s)."""
    if (request.content_length or 0) > BIG_BODY:
        return await asyncio.to_thread(parse, *args)
    return parse(*args)
