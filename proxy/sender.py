"""Delivery: take events from the outbox within the per-key budget, post, decide.

Every answer class maps to one decision (`classify`), and the outcome is a fixed set
that doubles as a metric label:

    2xx            success       done
    400            invalid       dead letter (never retried: the event itself is wrong)
    other 4xx      rejected      dead letter (401/403/404/413: a setup problem; re-send
                                 with `alert-proxy deadletter retry` once it is fixed)
    429            rate_limited  pause this routing key, exponential backoff + jitter,
                                 Retry-After honoured; the event stays first in line
    5xx            server_error  retry with backoff
    timeout, reset network       retry with backoff (delivery is at-least-once)
    (--dry-run)    dry_run       done: printed, not sent

The budget is PagerDuty's own rule, exactly: at most `limit` events in any 60 s per
routing key (a sliding window kept in the store, shared by replicas), sent at once while
the window has room, most urgent first when it has not. A few places of the window are
kept for critical triggers, so a critical page is never stuck behind a storm of others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import aiohttp
import orjson

from proxy import logs
from proxy.clock import Clock
from proxy.durations import header_seconds
from proxy.errors import StoreError
from proxy.metrics import Metrics
from proxy.model import OutEvent
from proxy.redact import mask
from proxy.stats import Tally
from proxy.store.base import Store, Window

__all__ = ["RETRY_REASONS", "Decision", "Outcome", "Sender", "Verdict", "backoff", "classify", "window_for"]

log = logging.getLogger("alert_proxy.sender")
IDLE_POLL = 1.0  # a worker with nothing to do looks again after this (other replicas enqueue too)


class Outcome(StrEnum):
    """What PagerDuty's answer was; a metric label (`events_sent_total{outcome}`)."""

    SUCCESS = "success"
    DRY_RUN = "dry_run"
    INVALID = "invalid"
    REJECTED = "rejected"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    NETWORK = "network"


RETRY_REASONS = (Outcome.RATE_LIMITED, Outcome.SERVER_ERROR, Outcome.NETWORK)  # retries_total{reason}


class Verdict(StrEnum):
    """What the sender does with the event."""

    DONE = "done"
    DEAD = "dead"
    PAUSE = "pause"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    verdict: Verdict


def classify(status: int | None) -> Decision:
    """What to do with an event given PagerDuty's HTTP status (None: no answer)."""
    if status is None:
        return Decision(Outcome.NETWORK, Verdict.RETRY)
    if 200 <= status < 300:
        return Decision(Outcome.SUCCESS, Verdict.DONE)
    if status == 429:
        return Decision(Outcome.RATE_LIMITED, Verdict.PAUSE)
    if status == 400:
        return Decision(Outcome.INVALID, Verdict.DEAD)
    if 400 <= status < 500:
        return Decision(Outcome.REJECTED, Verdict.DEAD)
    return Decision(Outcome.SERVER_ERROR, Verdict.RETRY)


def window_for(limit: int) -> Window:
    """The budget for `--rate-limit N`: N per 60 s, a twelfth kept for critical triggers."""
    return Window(limit=limit, seconds=60.0, reserve=max(1, limit // 12))


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter on the upper half: [d/2, d]."""
    d: float = min(cap, base * 2.0 ** max(0, attempt))
    return d / 2 + random.random() * d / 2


class Sender:
    def __init__(self, store: Store, upstream: str, clock: Clock, metrics: Metrics, *,
                 window: Window | None = None, timeout: float = 10.0, dry_run: bool = False,
                 retry_base: float = 1.0, retry_cap: float = 300.0, tally: Tally | None = None,
                 store_health: logs.Health | None = None) -> None:
        self.store, self.clock, self.metrics = store, clock, metrics
        self.tally = tally or Tally()
        self.upstream = upstream.rstrip("/")
        self.window, self.timeout, self.dry_run = window or Window(), timeout, dry_run
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._kick = asyncio.Event()
        self._stopping = False
        self._pauses: dict[str, int] = {}  # consecutive 429s per key
        self._inflight: dict[int, tuple[OutEvent, int]] = {}  # seq -> (event, budget stamp)
        self._names: dict[str, str] = {}  # routing key -> its name in metrics
        self._session: aiohttp.ClientSession | None = None
        self.store_health = store_health or logs.Health(log, "store")
        self.pd_health = logs.Health(log, "PagerDuty")  # answers 5xx, or not at all
        self.on_delivered: Callable[[str], None] | None = None  # a trigger's dedup_key (notes)

    def kick(self) -> None:
        """Something was enqueued: every waiting worker looks now. A worker holds the
        event it got before asking the store, so a kick during that call still wakes it."""
        self._kick.set()
        self._kick = asyncio.Event()

    async def _wait(self, kicked: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(kicked.wait(), timeout=seconds)

    async def run(self) -> None:
        """Start a worker per routing key with pending events, as they appear."""
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"Content-Type": "application/json", "User-Agent": "alert-proxy"},
        )
        while not self._stopping:
            kicked = self._kick
            try:
                for rk in await self.store.outbox_keys():
                    task = self._workers.get(rk)
                    if task is None or task.done():
                        self._workers[rk] = asyncio.create_task(self._work(rk))
            except StoreError as e:
                self.store_health.failed(str(e), during="outbox")
                self.metrics.store_errors.labels("outbox_keys").inc()
            await self._wait(kicked, IDLE_POLL)

    async def stop(self, deadline: float) -> None:
        """Stop taking events; let the sends under way finish until shortly before
        `deadline` (monotonic), then cut them short and give their events back to the
        outbox for the next start."""
        self._stopping = True
        self.kick()
        # The sends under way get the first part of the time, the releases the rest (all at
        # once: one slow call must not hold the others past the deadline). An event whose
        # release does not get through in time goes again when its lease ends.
        release_at = deadline - min(1.0, max(0.0, deadline - time.monotonic()) / 3)
        tasks = [t for t in self._workers.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.0, release_at - time.monotonic()))
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=max(0.1, release_at - time.monotonic()))
        now = self.clock.now()
        releases = [asyncio.ensure_future(self.store.release(ev, stamp, now))
                    for ev, stamp in self._inflight.values()]
        self._inflight.clear()
        for t in releases:  # a StoreError and the like: the lease ends and the event goes again
            t.add_done_callback(lambda t: t.cancelled() or t.exception())
        if releases:
            _, late = await asyncio.wait(releases, timeout=max(0.1, deadline - time.monotonic()))
            for t in late:
                t.cancel()
        if self._session is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._session.close(), timeout=max(0.1, deadline - time.monotonic()))

    async def _work(self, rk: str) -> None:
        """One routing key: send its events one at a time, most urgent first, within the
        budget; sleep exactly as long as the store says nothing can go (or until kicked).
        Ends after IDLE_POLL with nothing queued; run() starts it again when work comes."""
        while not self._stopping:
            kicked = self._kick
            try:
                take = await self.store.take(rk, self.clock.now(), self.timeout + 5.0, self.window)
            except StoreError as e:
                self.metrics.store_errors.labels("send").inc()
                self.store_health.failed(str(e), during="send")
                await asyncio.sleep(1.0)
                continue
            if take.event is None:
                if math.isinf(take.wait):
                    return
                if take.wait > 0.05:
                    self.metrics.budget_waits.labels(self._names.get(rk, mask(rk))).inc()
                await self._wait(kicked, min(take.wait, IDLE_POLL))
                continue
            ev = take.event
            if rk not in self._names:
                self.metrics.key_seen(ev.key_name)
            self._names[rk] = ev.key_name
            self._inflight[ev.seq] = (ev, take.stamp)
            try:
                await self._deliver(ev, take.stamp)
            except asyncio.CancelledError:
                raise  # stop() cut the send short: it stays in flight, and stop() gives it back
            except StoreError as e:
                self._inflight.pop(ev.seq, None)
                self.metrics.store_errors.labels("send").inc()
                self.store_health.failed(str(e), during="after a send (the event's lease ends "
                                         "and it goes again)")
                await asyncio.sleep(1.0)
                continue
            except BaseException:
                self._inflight.pop(ev.seq, None)
                raise
            self._inflight.pop(ev.seq, None)

    async def _deliver(self, ev: OutEvent, stamp: int) -> None:
        status, headers, error = await self._post(ev)
        d = Decision(Outcome.DRY_RUN, Verdict.DONE) if self.dry_run else classify(status)
        self.metrics.events_sent.labels(ev.action, d.outcome).inc()
        fields = {"dedup_key": ev.dedup_key, "action": ev.action, "key": ev.key_name,
                  "status": status, "outcome": d.outcome, "attempt": ev.attempts + 1}
        now = self.clock.now()
        if d.outcome in (Outcome.SERVER_ERROR, Outcome.NETWORK):
            self.pd_health.failed(error, key=ev.key_name)
        elif d.outcome is not Outcome.DRY_RUN:
            self.pd_health.ok()  # it answered (a 4xx or a 429 is an answer)
        if d.verdict is Verdict.DONE:
            self._pauses.pop(ev.routing_key, None)
            await self.store.done(ev, stamp, now)
            self.tally.merge({"sent|" + ev.action: 1, "sent_key|" + ev.key_name: 1}, now)
            logs.info(log, "event delivered", fields)
            if ev.action == "trigger" and self.on_delivered is not None:
                self.on_delivered(ev.dedup_key)
        elif d.verdict is Verdict.DEAD:
            await self.store.dead(ev, stamp, error, now)
            self.metrics.dead_letters.labels(ev.action).inc()
            log.error("event dead-lettered", extra={"fields": {**fields, "error": error}})
        elif d.verdict is Verdict.PAUSE:
            n = self._pauses.get(ev.routing_key, 0)
            self._pauses[ev.routing_key] = n + 1
            delay = header_seconds(headers) or backoff(n, self.retry_base * 4, self.retry_cap)
            await self.store.pause(ev.routing_key, now + delay)
            await self.store.retry(ev, stamp, now + delay, error, count=False, now=now)
            self.metrics.rate_limited.labels(ev.key_name).inc()
            self.tally.add("429|" + ev.key_name, 1, now)
            self.metrics.retries.labels(d.outcome).inc()
            log.warning("rate limited; key paused", extra={"fields": {**fields, "pause_s": round(delay, 2)}})
        else:
            delay = backoff(ev.attempts, self.retry_base, self.retry_cap)
            await self.store.retry(ev, stamp, now + delay, error, count=True, now=now)
            self.metrics.retries.labels(d.outcome).inc()
            # (debug: while PagerDuty is down every attempt fails; pd_health says it once)
            log.debug("event will be retried", extra={"fields": {**fields, "error": error,
                                                                 "retry_in_s": round(delay, 2)}})

    async def _post(self, ev: OutEvent) -> tuple[int | None, dict[str, str] | None, str]:
        """(status, headers, error text without secrets)."""
        if self.dry_run:
            shown = orjson.loads(ev.body)
            shown["routing_key"] = mask(ev.routing_key)
            sys.stdout.write(orjson.dumps({"dry_run": True, "would_send": shown}).decode() + "\n")
            sys.stdout.flush()
            return 202, None, ""
        assert self._session is not None
        t0 = time.perf_counter()
        try:
            async with self._session.post(self.upstream + ev.path, data=ev.body) as resp:
                text = await resp.text()
                self.metrics.upstream_latency.observe(time.perf_counter() - t0)
                err = "" if resp.status < 300 else f"HTTP {resp.status}: {text[:300]}"
                return resp.status, dict(resp.headers), err.replace(ev.routing_key, mask(ev.routing_key))
        except TimeoutError:
            return None, None, f"timeout after {self.timeout}s"
        except aiohttp.ClientError as e:
            return None, None, f"{type(e).__name__}: {e}".replace(ev.routing_key, mask(ev.routing_key))
