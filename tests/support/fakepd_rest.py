"""A fake PagerDuty REST API v2 over real HTTP, strict by ../shared/integrations/REST-FACTS.md
section 1, whose incidents are made from the events a FakePagerDuty accepted.

Incidents: an accepted trigger opens one for its dedup_key (its `incident_key`) unless one
is open; an acknowledge or resolve event changes the open one. They appear `lag` seconds
after the event (the Events API answers 202 before the incident exists). A test acts as a
person in PagerDuty's web UI with `acknowledge(key)` / `resolve(key)`: no webhook is sent.

Every request is checked (§1.1): `Authorization: Token token=<token>` exactly (else 401,
code 2006), `Accept: application/vnd.pagerduty+json;version=2`, `Content-Type:
application/json` on writes, `From` a known user's email on the writes that need it (400
with PagerDuty's message; code 1028 when it is not an email); classic pagination (§1.4:
limit <= 100, offset + limit <= 10,000, else 400 code 2001); `statuses[]` values, date
ranges. What breaks the contract is recorded in `violations`. The rate limit (§1.3) answers
429 with `ratelimit-*` headers and PagerDuty's body; `fail` answers the next n requests 500.

Guesses, as REST-FACTS marks them unconfirmed: a 404 for an unknown incident carries code
2100; a missing From's error code is not sent (only the message); Retry-After is never sent."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from tests.support.fakepd import FakePagerDuty
from tests.support.net import serve_app

ACCEPT = "application/vnd.pagerduty+json;version=2"
NEEDS_FROM = ("POST /incidents/{id}/notes", "PUT /incidents/{id}")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Incident:
    id: str
    number: int
    key: str
    title: str
    created: float
    status: str = "triggered"
    changed: float = 0.0
    acker: str = ""
    notes: list[dict[str, Any]] = field(default_factory=list)

    def body(self, base: str) -> dict[str, Any]:
        acks = [{"at": _iso(self.changed), "acknowledger": {
            "id": "PUSER01", "type": "user_reference", "summary": self.acker}}] \
            if self.status == "acknowledged" else []
        return {
            "id": self.id, "type": "incident", "summary": f"[#{self.number}] {self.title}",
            "self": f"{base}/incidents/{self.id}", "html_url": f"https://acme.pagerduty.com/incidents/{self.id}",
            "incident_number": self.number, "title": self.title, "created_at": _iso(self.created),
            "updated_at": _iso(self.changed or self.created), "status": self.status,
            "incident_key": self.key, "urgency": "high", "acknowledgements": acks, "assignments": [],
            "last_status_change_at": _iso(self.changed or self.created),
            "resolved_at": _iso(self.changed) if self.status == "resolved" else None,
            "service": {"id": "PSVC001", "type": "service_reference", "summary": "Checkout"},
        }


@dataclass
class FakePagerDutyREST:
    events: FakePagerDuty
    token: str = "u+fakeRestToken0123456789"
    users: tuple[str, ...] = ("oncall@example.com",)
    lag: float = 0.0  # seconds from an accepted event to its effect on incidents
    per_minute: int = 960
    incidents: dict[str, Incident] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path?query, status
    fail: int = 0  # answer the next n requests 500
    throttle: int = 0  # answer the next n requests 429 (ratelimit-reset: reset_after)
    reset_after: int = 1
    url: str = ""

    def __post_init__(self) -> None:
        self._seen = 0  # events of `events` turned into incidents so far
        self._times: deque[float] = deque()
        self._runner: web.AppRunner | None = None

    # -- what tests do and read ---------------------------------------------------------
    def open_for(self, key: str) -> Incident | None:
        self._catch_up()
        found = [i for i in self.incidents.values() if i.key == key and i.status != "resolved"]
        return found[-1] if found else None

    def newest(self, key: str) -> Incident | None:
        self._catch_up()
        found = [i for i in self.incidents.values() if i.key == key]
        return found[-1] if found else None

    def resolve(self, key: str) -> Incident:
        """A responder resolves the incident in PagerDuty's UI (no webhook)."""
        inc = self.open_for(key)
        assert inc is not None, f"no open incident for {key}"
        inc.status, inc.changed = "resolved", time.time()
        return inc

    def acknowledge(self, key: str, who: str = "Jane Doe") -> Incident:
        inc = self.open_for(key)
        assert inc is not None, f"no open incident for {key}"
        inc.status, inc.changed, inc.acker = "acknowledged", time.time(), who
        return inc

    def calls(self, method: str, prefix: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and p.startswith(prefix))

    # -- incidents from the events ------------------------------------------------------
    def _catch_up(self) -> None:
        accepted = self.events.accepted()
        now = time.time()
        while self._seen < len(accepted) and accepted[self._seen].at <= now - self.lag:
            ev = accepted[self._seen]
            self._seen += 1
            key = ev.dedup_key
            found = [i for i in self.incidents.values() if i.key == key and i.status != "resolved"]
            inc = found[-1] if found else None
            if ev.action == "trigger" and inc is None:
                n = len(self.incidents) + 1
                summary = str((ev.body.get("payload") or {}).get("summary", ""))
                self.incidents[f"PINC{n:04d}"] = Incident(f"PINC{n:04d}", n, key, summary, ev.at)
            elif ev.action in ("acknowledge", "resolve") and inc is not None:
                inc.status = "acknowledged" if ev.action == "acknowledge" else "resolved"
                inc.changed, inc.acker = ev.at, "alert-proxy" if ev.action == "acknowledge" else ""

    # -- the server ---------------------------------------------------------------------
    @staticmethod
    def _error(status: int, message: str, code: int | None = None, errors: list[str] | None = None,
               headers: dict[str, str] | None = None) -> web.Response:
        e: dict[str, Any] = {"message": message}
        if code is not None:
            e["code"] = code
        if errors:
            e["errors"] = errors
        return web.Response(body=orjson.dumps({"error": e}), status=status,
                            content_type="application/json", headers=headers)

    def _bad(self, request: web.Request, what: str) -> None:
        self.violations.append(f"{request.method} {request.path}: {what}")

    @web.middleware
    async def _checks(self, request: web.Request, handler: Any) -> web.StreamResponse:
        resp = await self._check(request, handler)
        self.requests.append((request.method, request.path_qs, resp.status))
        return resp

    async def _check(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Token token={self.token}":
            self._bad(request, "Authorization is not 'Token token=<the key>'")
            return self._error(401, "Authentication failed", 2006)
        if request.headers.get("Accept") != ACCEPT:
            self._bad(request, f"Accept {request.headers.get('Accept')!r}")
        if request.method in ("POST", "PUT") and request.content_type != "application/json":
            self._bad(request, f"Content-Type {request.content_type!r} on a write")
        now = time.time()
        while self._times and self._times[0] <= now - 60:
            self._times.popleft()
        if self.throttle or len(self._times) >= self.per_minute:
            self.throttle = max(0, self.throttle - 1)
            return self._error(429, "Rate Limit Exceeded", 2020, headers={
                "ratelimit-limit": str(self.per_minute), "ratelimit-remaining": "0",
                "ratelimit-reset": str(self.reset_after)})
        self._times.append(now)
        if self.fail:
            self.fail -= 1
            return self._error(500, "Internal error", 2000)
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else ""
        if f"{request.method} {route}" in NEEDS_FROM:
            sender = request.headers.get("From")
            if not sender:
                self._bad(request, "no From header on a write that needs it")
                return self._error(400, 'You must specify a user\'s email address in the "From" '
                                   'header to perform this action')
            if "@" not in sender:
                self._bad(request, f"From {sender!r} is not an email")
                return self._error(400, 'Malformed "From" header', 1028)
            if sender not in self.users:
                return self._error(400, "Requester User Not Found", 1008)
        self._catch_up()
        return await handler(request)

    def _page(self, request: web.Request, items: list[Any], field_: str) -> web.Response:
        q = request.query
        try:
            limit, offset = int(q.get("limit", "25")), int(q.get("offset", "0"))
        except ValueError:
            return self._error(400, "Invalid Input Provided", 2001, ["limit and offset are integers"])
        if limit > 100 or limit < 1 or offset < 0:
            self._bad(request, f"limit {limit}, offset {offset}")
            return self._error(400, "Invalid Input Provided", 2001, ["limit must be 1 to 100"])
        if offset + limit > 10_000:
            self._bad(request, f"offset + limit = {offset + limit} > 10000")
            return self._error(400, "Invalid Input Provided", 2001, ["Offset must be less than 10000"])
        chunk = items[offset:offset + limit]
        return web.json_response({field_: chunk, "limit": limit, "offset": offset,
                                  "more": offset + limit < len(items), "total": None},
                                 dumps=lambda o: orjson.dumps(o).decode())

    async def _incidents(self, request: web.Request) -> web.Response:
        q = request.query
        statuses = q.getall("statuses[]", [])
        if any(s not in ("triggered", "acknowledged", "resolved") for s in statuses):
            return self._error(400, "Invalid Input Provided", 2001, ["statuses[] is invalid"])
        if "statuses" in q or "statuses[triggered]" in q:
            self._bad(request, "statuses without [] (PagerDuty ignores it)")
        date_range = q.get("date_range")
        if date_range not in (None, "all"):
            return self._error(400, "Invalid Query Date Range", 2005)
        since = time.time() - 30 * 86400 if date_range is None and "since" not in q else 0.0
        key = q.get("incident_key")
        items = [i for i in self.incidents.values()
                 if (not statuses or i.status in statuses) and (key is None or i.key == key)
                 and i.created >= since]
        return self._page(request, [i.body(self.url) for i in items], "incidents")

    def _incident(self, request: web.Request) -> Incident | web.Response:
        inc = self.incidents.get(request.match_info["id"])
        if inc is None:
            return self._error(404, "Not Found", 2100)  # (2100 or 5001: unconfirmed)
        return inc

    async def _get_notes(self, request: web.Request) -> web.Response:
        inc = self._incident(request)
        if isinstance(inc, web.Response):
            return inc
        return web.json_response({"notes": inc.notes})

    async def _post_note(self, request: web.Request) -> web.Response:
        inc = self._incident(request)
        if isinstance(inc, web.Response):
            return inc
        try:
            body = orjson.loads(await request.read())
            content = body["note"]["content"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self._bad(request, "not {'note': {'content': ...}}")
            return self._error(400, "Invalid Input Provided", 2001, ["Note content is required"])
        if not isinstance(content, str) or not content.strip():
            self._bad(request, "blank note content")
            return self._error(400, "Invalid Input Provided", 2001, ["Note content can't be blank"])
        if len(inc.notes) >= 2000:
            return self._error(400, "Invalid Input Provided", 2001, ["at most 2000 notes"])
        note = {"id": f"PNOTE{len(inc.notes) + 1:03d}", "content": content, "created_at": _iso(time.time()),
                "user": {"id": "PUSER01", "type": "user_reference", "summary": request.headers["From"]},
                "channel": {"summary": "The PagerDuty website or APIs"}}
        inc.notes.append(note)
        return web.json_response({"note": note})

    async def _abilities(self, _request: web.Request) -> web.Response:
        return web.json_response({"abilities": ["teams", "urgencies", "service_support_hours"]})

    async def _unknown(self, request: web.Request) -> web.Response:
        self._bad(request, "not a path the proxy should call")
        return self._error(404, "Not Found", 2100)

    async def start(self) -> str:
        app = web.Application(middlewares=[self._checks])
        app.router.add_get("/incidents", self._incidents)
        app.router.add_get("/incidents/{id}/notes", self._get_notes)
        app.router.add_post("/incidents/{id}/notes", self._post_note)
        app.router.add_get("/abilities", self._abilities)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        self._runner, self.url = await serve_app(app)
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
