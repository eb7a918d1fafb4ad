"""Delivery: take events from the outbox, spend the per-key budget, post, decide.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

import aiohttp
import orjson

from proxy.clock import Clock
from proxy.errors import StoreError
from proxy.metrics import Metrics
from proxy.model import OutEvent
from proxy.redact import mask
from proxy.store.base import Store

__all__ = ["Budget", "Decision", "Outcome", "Sender", "Verdict", "classify"]

log = logging.getLogger("alert_proxy.sender")


class Outcome(StrEnum):
    """What PagerDuty's answer was; a metric label (`events_sent_total{outcome}`)."""

    SUCCESS = "success"
    DRY_RUN = "dry_run"
    INVALID = "invalid"
    REJECTED = "rejected"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    NETWORK = "network"


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


@dataclass(frozen=True, slots=True)
class Budget:
    """Token bucket per routing key. In any window of `window` seconds at most
    `limit` events go out: burst + rate * window == limit."""

    limit: int = 120
    window: float = 60.0
    burst: int = 10

    @property
    def rate(self) -> float:
        return (self.limit - self.burst) / self.window


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter on the upper half: [d/2, d]."""
    d: float = min(cap, base * 2.0 ** max(0, attempt))
    return d / 2 + random.random() * d / 2


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a Retry-After header given in seconds (None if absent or a date)."""
    raw = headers.get("Retry-After") if headers else None
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


class Sender:
    def __init__(self, store: Store, upstream: str, clock: Clock, metrics: Metrics, *,
                 budget: Budget = Budget(), timeout: float = 10.0, dry_run: bool = False,
                 retry_base: float = 1.0, retry_cap: float = 300.0, poll: float = 0.05) -> None:
        self.store, self.clock, self.metrics = store, clock, metrics
        self.upstream = upstream.rstrip("/")
        self.budget, self.timeout, self.dry_run = budget, timeout, dry_run
        self.retry_base, self.retry_cap, self.poll = retry_base, retry_cap, poll
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._kick = asyncio.Event()
        self._pauses: dict[str, int] = {}  # consecutive 429s per key
        self._session: aiohttp.ClientSession | None = None

    def kick(self) -> None:
        """Something was enqueued: look now rather than at the next poll."""
        self._kick.set()

    async def run(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"Content-Type": "application/json", "User-Agent": "alert-proxy"},
        )
        try:
            while True:
                try:
                    for rk in await self.store.outbox_keys():
                        task = self._workers.get(rk)
                        if task is None or task.done():
                            self._workers[rk] = asyncio.create_task(self._work(rk))
                except StoreError:
                    log.warning("outbox unavailable; retrying")
                    self.metrics.store_errors.labels("outbox_keys").inc()
                self._kick.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), timeout=self.poll * 4)
        finally:
            for t in self._workers.values():
                t.cancel()
            await asyncio.gather(*self._workers.values(), return_exceptions=True)
            await self._session.close()

    async def _work(self, rk: str) -> None:
        """One routing key's line, until it has been idle for 5 s; a store that fails
        makes it wait and go on (what it had leased is taken again when the lease ends)."""
        while True:
            try:
                await self._line(rk)
                return
            except StoreError as e:
                self.metrics.store_errors.labels("send").inc()
                log.warning("store unavailable; sender waits", extra={"fields": {"error": str(e)}})
                await asyncio.sleep(1.0)

    async def _line(self, rk: str) -> None:
        """Send rk's events one at a time, most urgent first."""
        idle_since = time.monotonic()
        while True:
            now = self.clock.now()
            paused = await self.store.paused_until(rk)
            if paused > now:
                await asyncio.sleep(min(paused - now, 1.0))
                continue
            ev = await self.store.take(rk, now, lease=self.timeout + 5.0)
            if ev is None:
                if time.monotonic() - idle_since > 5.0:
                    return  # the loop in run() starts a new worker when work arrives
                await asyncio.sleep(self.poll)
                continue
            wait = await self.store.acquire(rk, self.budget.rate, self.budget.burst, now)
            if wait > 0:
                self.metrics.budget_waits.labels(ev.key_name).inc()
                await self.store.retry(ev, now, "waiting for budget", count=False, now=now)
                await asyncio.sleep(wait)
                continue
            await self._deliver(ev)
            idle_since = time.monotonic()

    async def _deliver(self, ev: OutEvent) -> None:
        status, headers, error = await self._post(ev)
        d = classify(status)
        self.metrics.events_sent.labels(ev.action, d.outcome).inc()
        fields = {"dedup_key": ev.dedup_key, "action": ev.action, "key": ev.key_name,
                  "status": status, "outcome": d.outcome, "attempt": ev.attempts + 1}
        now = self.clock.now()
        if d.verdict is Verdict.DONE:
            self._pauses.pop(ev.routing_key, None)
            await self.store.done(ev, now)
            log.info("event delivered", extra={"fields": fields})
        elif d.verdict is Verdict.DEAD:
            await self.store.dead(ev, error, now)
            self.metrics.dead_letters.labels(ev.action).inc()
            log.error("event dead-lettered", extra={"fields": {**fields, "error": error}})
        elif d.verdict is Verdict.PAUSE:
            n = self._pauses.get(ev.routing_key, 0)
            self._pauses[ev.routing_key] = n + 1
            delay = _retry_after(headers) or backoff(n, self.retry_base * 4, self.retry_cap)
            await self.store.pause(ev.routing_key, now + delay)
            await self.store.retry(ev, now + delay, error, count=False, now=now)
            self.metrics.rate_limited.labels(ev.key_name).inc()
            self.metrics.retries.labels(d.outcome).inc()
            log.warning("rate limited; key paused", extra={"fields": {**fields, "pause_s": round(delay, 2)}})
        else:
            delay = backoff(ev.attempts, self.retry_base, self.retry_cap)
            await self.store.retry(ev, now + delay, error, count=True, now=now)
            self.metrics.retries.labels(d.outcome).inc()
            log.warning("event will be retried", extra={"fields": {**fields, "error": error,
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
