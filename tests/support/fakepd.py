"""A fake PagerDuty Events API v2 over real HTTP, strict by the rules of FACTS.md.

It validates every request field by field (any problem is recorded in `violations` and
answered 400 as PagerDuty does), enforces the per-routing-key limit over a sliding 60 s
window (answered 429), and injects faults on demand: a share of 500s, connections dropped
after the event was accepted, slow answers."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from tests.support.net import serve_app

SEVERITIES = ("critical", "error", "warning", "info")
TOP_FIELDS = {"routing_key", "event_action", "dedup_key", "payload", "images", "links",
              "client", "client_url"}
PAYLOAD_FIELDS = {"summary", "source", "severity", "timestamp", "component", "group", "class",
                  "custom_details"}


@dataclass
class Received:
    at: float
    path: str
    body: dict[str, Any]
    status: int

    @property
    def action(self) -> str:
        return str(self.body.get("event_action", "change"))

    @property
    def dedup_key(self) -> str:
        return str(self.body.get("dedup_key", ""))


def validate_event(body: Any, strict_fields: bool = True) -> list[str]:
    """Every way `body` breaks PagerDuty's Events v2 contract."""
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    errs: list[str] = []
    rk = body.get("routing_key")
    if not isinstance(rk, str) or len(rk) != 32 or not rk.isalnum():
        errs.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = body.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errs.append("'event_action' is invalid")
    dk = body.get("dedup_key")
    if dk is not None and (not isinstance(dk, str) or len(dk) > 255):
        errs.append("'dedup_key' is invalid")
    if action in ("acknowledge", "resolve") and not dk:
        errs.append("'dedup_key' is missing or blank")
    if strict_fields:
        errs += [f"unknown field {k!r}" for k in body if k not in TOP_FIELDS]
    if action == "trigger" or "payload" in body:
        p = body.get("payload")
        if not isinstance(p, dict):
            return errs + ["'payload' is missing or not an object"]
        s = p.get("summary")
        if not isinstance(s, str) or not s.strip():
            errs.append("'payload.summary' is missing or blank")
        elif len(s) > 1024:
            errs.append("Length of 'payload.summary' is incorrect")
        src = p.get("source")
        if not isinstance(src, str) or not src.strip():
            errs.append("'payload.source' is missing or blank")
        if p.get("severity") not in SEVERITIES:
            errs.append("'payload.severity' is invalid")
        ts = p.get("timestamp")
        if ts is not None:
            try:
                datetime.fromisoformat(str(ts))
            except ValueError:
                errs.append("'payload.timestamp' is invalid")
        if "custom_details" in p and not isinstance(p["custom_details"], dict):
            errs.append("'payload.custom_details' is not an object")
        if strict_fields:
            errs += [f"unknown payload field {k!r}" for k in p if k not in PAYLOAD_FIELDS]
    for im in body.get("images", []) or []:
        if not isinstance(im, dict) or not str(im.get("src", "")).startswith("https://"):
            errs.append("'images[].src' must be an https URL")
    errs += _links(body)
    for k in ("client", "client_url"):
        if k in body and not isinstance(body[k], str):
            errs.append(f"'{k}' is not a string")
    return errs


def _links(body: dict[str, Any]) -> list[str]:
    """links[]: objects with a non-blank `href` (a blank one is refused, as the issue that
    found it saw PagerDuty do for change events), `text` a string when given."""
    errs = []
    links = body.get("links", [])
    if links is not None and not isinstance(links, list):
        return ["'links' must be an array"]
    for lk in links or []:
        if not isinstance(lk, dict) or not isinstance(lk.get("href"), str) or not lk["href"].strip():
            errs.append("'links[].href' is missing or blank")
        elif "text" in lk and not isinstance(lk["text"], str):
            errs.append("'links[].text' is not a string")
    return errs


def validate_change(body: Any) -> list[str]:
    """Every way `body` breaks the change events contract (FACTS.md): routing_key,
    payload.summary (<= 1024), optional source, timestamp, custom_details, links."""
    if not isinstance(body, dict):
        return ["body is not a JSON object"]
    errs: list[str] = []
    rk = body.get("routing_key")
    if not isinstance(rk, str) or len(rk) != 32 or not rk.isalnum():
        errs.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    p = body.get("payload")
    if not isinstance(p, dict):
        return errs + ["'payload' is missing or not an object"]
    s = p.get("summary")
    if not isinstance(s, str) or not s.strip():
        errs.append("'payload.summary' is missing or blank")
    elif len(s) > 1024:
        errs.append("Length of 'payload.summary' is incorrect")
    if "source" in p and not isinstance(p["source"], str):
        errs.append("'payload.source' is not a string")
    if p.get("timestamp") is not None:
        try:
            datetime.fromisoformat(str(p["timestamp"]))
        except ValueError:
            errs.append("'payload.timestamp' is invalid")
    if "custom_details" in p and not isinstance(p["custom_details"], dict):
        errs.append("'payload.custom_details' is not an object")
    return errs + _links(body)


@dataclass
class FakePagerDuty:
    limit: int = 120  # events per routing key per sliding window
    window: float = 60.0
    fail_rate: float = 0.0  # share answered 500
    drop_rate: float = 0.0  # share accepted, then the connection is dropped
    delay: float = 0.0  # seconds before answering
    answer: int | None = None  # force this status for every request
    retry_after: str | None = None  # sent with forced 429s
    strict_fields: bool = True
    refuse: Any = None  # a predicate on an event's body: True answers it 400 (invalid event)
    seed: int = 7
    received: list[Received] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    _accepted: dict[str, deque[float]] = field(default_factory=dict)
    url: str = ""

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._runner: web.AppRunner | None = None

    # -- what tests read ------------------------------------------------------------
    def accepted(self, path: str = "/v2/enqueue") -> list[Received]:
        return [r for r in self.received if r.status == 202 and r.path == path]

    def count(self, status: int) -> int:
        return sum(1 for r in self.received if r.status == status)

    def by_dedup(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in self.accepted():
            out.setdefault(r.dedup_key, []).append(r.action)
        return out

    def max_in_window(self, routing_key: str, window: float = 60.0) -> int:
        ts = sorted(r.at for r in self.accepted() if r.body.get("routing_key") == routing_key)
        best, j = 0, 0
        for i, t in enumerate(ts):
            while ts[j] <= t - window:
                j += 1
            best = max(best, i - j + 1)
        return best

    # -- the server -----------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        now = time.time()
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.violations.append(f"{request.path}: body is not JSON")
            return self._answer(request.path, {}, 400, now, {
                "status": "Unrecognized object", "message": "Event object format is unrecognized",
                "errors": ["JSON parse error"]})
        if request.content_type != "application/json":
            self.violations.append(f"Content-Type {request.content_type!r}")
        if len(raw) > 512 * 1024:
            self.violations.append(f"body of {len(raw)} bytes")
            return self._answer(request.path, body, 413, now, {"status": "error"})
        if request.path == "/v2/change/enqueue":
            errs = validate_change(body)
        else:
            errs = validate_event(body, self.strict_fields)
        if not errs and self.refuse is not None and self.refuse(body):
            return self._answer(request.path, body, 400, now, {
                "status": "invalid event", "message": "Event object is invalid",
                "errors": ["refused by the test"]})
        if errs:
            self.violations += [f"{request.path}: {e}" for e in errs]
            return self._answer(request.path, body, 400, now, {
                "status": "invalid event", "message": "Event object is invalid", "errors": errs})
        if self.answer is not None:
            headers = {"Retry-After": self.retry_after} if self.retry_after else None
            return self._answer(request.path, body, self.answer, now, {"status": "forced"}, headers)
        rk = str(body.get("routing_key"))
        log = self._accepted.setdefault(rk, deque())
        while log and log[0] <= now - self.window:
            log.popleft()
        if len(log) >= self.limit:
            return self._answer(request.path, body, 429, now, {
                "status": "throttle exceeded", "message": "Requests for this service are arriving "
                "too quickly. Please retry later."})
        if self._rng.random() < self.fail_rate:
            return self._answer(request.path, body, 500, now, {"status": "error"})
        log.append(now)
        dk = body.get("dedup_key") or f"generated{len(self.received)}"
        resp = self._answer(request.path, {**body, "dedup_key": dk}, 202, now, {
            "status": "success", "message": "Event processed", "dedup_key": dk})
        if self._rng.random() < self.drop_rate:
            assert request.transport is not None
            request.transport.close()  # accepted, but the sender never hears it
        return resp

    def _answer(self, path: str, body: Any, status: int, at: float, data: dict[str, Any],
                headers: dict[str, str] | None = None) -> web.Response:
        self.received.append(Received(at, path, body if isinstance(body, dict) else {}, status))
        return web.Response(body=orjson.dumps(data), status=status,
                            content_type="application/json", headers=headers)

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post("/v2/enqueue", self._handle)
        app.router.add_post("/v2/change/enqueue", self._handle)
        self._runner, self.url = await serve_app(app, port)
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
