"""Strict fakes of the action targets over real HTTP, by ../shared/integrations/REST-FACTS.md:
Slack incoming webhooks (§3), Jira Cloud REST v3 (§4) and Statuspage v1 (§5), on one port.

Each checks what the real one requires and answers its documented errors: Slack 200 `ok` in
text/plain, 400 `invalid_payload`, 404 `channel_not_found` for an unknown hook; Jira Basic
auth (401), 400 with an ErrorCollection for a missing field or a string description on v3,
404 for an unknown issue, 204 for a transition, 201 for an issue or a comment; Statuspage
`Authorization: OAuth <key>` (401 "Could not authenticate"), 422 for an unknown component
status, 404 for an unknown page or component. Everything that breaks a contract is also
recorded in `violations`.

`fail(target, n, status, retry_after)` answers the next n requests to a target with that
status (500, 429 with Retry-After, Statuspage's 420).

Guesses, as REST-FACTS marks them unconfirmed: Slack's 429 body is empty; Jira's and
Statuspage's 429 bodies are their usual error bodies; Statuspage's errors are
{"message": ...}; more than 50 Slack blocks is a 400 `invalid_blocks`."""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson
from aiohttp import web

from tests.support.net import serve_app

COMPONENT_STATUSES = ("operational", "under_maintenance", "degraded_performance", "partial_outage",
                      "major_outage", "")


@dataclass
class Issue:
    key: str
    fields: dict[str, Any]
    status: str = "To Do"
    comments: list[Any] = field(default_factory=list)


@dataclass
class FakeTargets:
    slack_path: str = "/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
    jira_email: str = "bot@example.com"
    jira_token: str = "jira-token-6f7e8d"
    statuspage_key: str = "sp-key-1a2b3c4d5e"
    page: str = "pg1"
    components: dict[str, str] = field(default_factory=lambda: {"cmp1": "operational", "cmp2": "operational"})
    slack: list[dict[str, Any]] = field(default_factory=list)  # messages accepted
    issues: dict[str, Issue] = field(default_factory=dict)
    sp_incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    component_log: list[tuple[str, str]] = field(default_factory=list)  # (component, status) accepted
    violations: list[str] = field(default_factory=list)
    requests: list[tuple[str, str, str, int]] = field(default_factory=list)  # target, method, path, status
    url: str = ""

    def __post_init__(self) -> None:
        self._faults: dict[str, list[tuple[int, str | None]]] = {"slack": [], "jira": [], "statuspage": []}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    # -- what tests do and read --------------------------------------------------------
    def fail(self, target: str, n: int, status: int, retry_after: str | None = None) -> None:
        self._faults[target] += [(status, retry_after)] * n

    def count(self, target: str, status: int | None = None) -> int:
        return sum(1 for t, _, _, s in self.requests if t == target and (status is None or s == status))

    @property
    def slack_url(self) -> str:
        return self.url + self.slack_path

    # -- plumbing -----------------------------------------------------------------------
    def _bad(self, what: str) -> None:
        self.violations.append(what)

    @web.middleware
    async def _mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        target = request.path.split("/")[1]
        target = {"services": "slack", "rest": "jira", "v1": "statuspage"}.get(target, target)
        faults = self._faults.get(target) or []
        if faults:
            status, after = faults.pop(0)
            headers = {"Retry-After": after} if after else {}
            if target == "slack":
                resp: web.StreamResponse = web.Response(status=status, text="" if status == 429 else "rollup_error",
                                                        headers=headers)
            elif target == "jira":
                resp = web.json_response({"errorMessages": ["Rate limit exceeded." if status == 429 else
                                                            "Internal server error"], "errors": {}},
                                         status=status, headers=headers)
            else:
                resp = web.json_response({"message": "Rate limited" if status in (420, 429) else "error"},
                                         status=status, headers=headers)
        else:
            resp = await handler(request)
        self.requests.append((target, request.method, request.path, resp.status))
        return resp

    async def _json(self, request: web.Request, target: str) -> Any:
        if request.content_type != "application/json":
            self._bad(f"{target} {request.method} {request.path}: Content-Type {request.content_type!r}")
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            self._bad(f"{target} {request.method} {request.path}: not JSON")
            return None

    # -- Slack ---------------------------------------------------------------------------
    async def _slack(self, request: web.Request) -> web.Response:
        if request.path != self.slack_path:
            return web.Response(status=404, text="channel_not_found", content_type="text/plain")
        if request.method != "POST":
            return web.Response(status=400, text="invalid_payload", content_type="text/plain")
        body = await self._json(request, "slack")
        if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"].strip():
            self._bad("slack: no text (the notification's fallback)")
            return web.Response(status=400, text="invalid_payload", content_type="text/plain")
        blocks = body.get("blocks", [])
        if not isinstance(blocks, list) or len(blocks) > 50:
            self._bad("slack: blocks is not a list of at most 50")
            return web.Response(status=400, text="invalid_blocks", content_type="text/plain")
        for b in blocks:
            text = (b.get("text") or {}).get("text", "") if isinstance(b, dict) else None
            fields = b.get("fields", []) if isinstance(b, dict) else None
            if text is None or len(text) > 3000 or not isinstance(fields, list) or len(fields) > 10 \
                    or b.get("type") not in ("section", "header", "context", "divider"):
                self._bad(f"slack: a block breaks Block Kit's limits: {b!r:.200}")
                return web.Response(status=400, text="invalid_blocks", content_type="text/plain")
        self.slack.append(body)
        return web.Response(text="ok", content_type="text/plain")

    # -- Jira ----------------------------------------------------------------------------
    def _jira_auth(self, request: web.Request) -> web.Response | None:
        want = "Basic " + base64.b64encode(f"{self.jira_email}:{self.jira_token}".encode()).decode()
        if request.headers.get("Authorization") != want:
            self._bad("jira: Authorization is not Basic email:token")
            return web.json_response({"errorMessages": ["You are not authenticated."], "errors": {}}, status=401)
        return None

    def _issue(self, request: web.Request) -> Issue | web.Response:
        issue = self.issues.get(request.match_info["key"])
        if issue is None:
            return web.json_response({"errorMessages": ["Issue does not exist or you do not have "
                                                        "permission to see it."], "errors": {}}, status=404)
        return issue

    @staticmethod
    def _adf_ok(doc: Any) -> bool:
        return isinstance(doc, dict) and doc.get("type") == "doc" and doc.get("version") == 1 \
            and isinstance(doc.get("content"), list)

    async def _jira_myself(self, request: web.Request) -> web.Response:
        return self._jira_auth(request) or web.json_response({"accountId": "5b10a", "displayName": "Bot"})

    async def _jira_create(self, request: web.Request) -> web.Response:
        if (denied := self._jira_auth(request)) is not None:
            return denied
        body = await self._json(request, "jira")
        f = body.get("fields") if isinstance(body, dict) else None
        errors: dict[str, str] = {}
        if not isinstance(f, dict):
            return web.json_response({"errorMessages": ["fields is required"], "errors": {}}, status=400)
        if (f.get("project") or {}).get("key") != "OPS":
            errors["project"] = "valid project is required"
        if not isinstance(f.get("summary"), str) or not f["summary"].strip() or len(f["summary"]) > 255:
            errors["summary"] = "You must specify a summary of the issue."
        if (f.get("issuetype") or {}).get("name") not in ("Task", "Bug", "Incident"):
            errors["issuetype"] = "Specify a valid issue type"
        if "description" in f and not self._adf_ok(f["description"]):
            errors["description"] = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"
        if errors:
            self._bad(f"jira create: {errors}")
            return web.json_response({"errorMessages": [], "errors": errors}, status=400)
        n = next(self._ids)
        key = f"OPS-{n}"
        self.issues[key] = Issue(key, f)
        return web.json_response({"id": str(10000 + n), "key": key,
                                  "self": f"{self.url}/rest/api/3/issue/{10000 + n}"}, status=201)

    async def _jira_comment(self, request: web.Request) -> web.Response:
        if (denied := self._jira_auth(request)) is not None:
            return denied
        issue = self._issue(request)
        if isinstance(issue, web.Response):
            return issue
        body = await self._json(request, "jira")
        if not isinstance(body, dict) or not self._adf_ok(body.get("body")):
            self._bad("jira comment: body is not ADF")
            return web.json_response({"errorMessages": [], "errors": {"comment": "Comment body can not be "
                                                                       "empty!"}}, status=400)
        issue.comments.append(body["body"])
        return web.json_response({"id": str(len(issue.comments)), "body": body["body"]}, status=201)

    _TRANSITIONS: ClassVar[dict[str, list[tuple[str, str, str]]]] = {"To Do": [("11", "Start", "In Progress"), ("31", "Resolve", "Done")],
                    "In Progress": [("31", "Resolve", "Done")], "Done": [("41", "Reopen", "To Do")]}

    async def _jira_transitions(self, request: web.Request) -> web.Response:
        if (denied := self._jira_auth(request)) is not None:
            return denied
        issue = self._issue(request)
        if isinstance(issue, web.Response):
            return issue
        if request.method == "GET":
            return web.json_response({"transitions": [
                {"id": i, "name": name, "to": {"id": str(100 + int(i)), "name": to}, "isAvailable": True}
                for i, name, to in self._TRANSITIONS[issue.status]]})
        body = await self._json(request, "jira")
        tid = ((body or {}).get("transition") or {}).get("id") if isinstance(body, dict) else None
        if not isinstance(tid, str) or not tid.isdigit():
            self._bad(f"jira transition: id {tid!r}")
            return web.json_response({"errorMessages": ["'transition' identifier must be an integer"],
                                      "errors": {}}, status=400)
        found = [to for i, _, to in self._TRANSITIONS[issue.status] if i == tid]
        if not found:
            self._bad(f"jira transition: {tid} is not available from {issue.status}")
            return web.json_response({"errorMessages": [f"Transition id '{tid}' is not valid for this issue."],
                                      "errors": {}}, status=400)
        issue.status = found[0]
        return web.Response(status=204)

    # -- Statuspage ----------------------------------------------------------------------
    def _sp_auth(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization") != f"OAuth {self.statuspage_key}":
            self._bad("statuspage: Authorization is not 'OAuth <key>'")
            return web.json_response({"message": "Could not authenticate"}, status=401)
        if request.match_info.get("page") != self.page:
            return web.json_response({"message": "Page not found"}, status=404)
        return None

    async def _sp_page(self, request: web.Request) -> web.Response:
        return self._sp_auth(request) or web.json_response({"id": self.page, "name": "Acme"})

    async def _sp_component(self, request: web.Request) -> web.Response:
        if (denied := self._sp_auth(request)) is not None:
            return denied
        cid = request.match_info["cid"]
        if cid not in self.components:
            return web.json_response({"message": "Component not found"}, status=404)
        body = await self._json(request, "statuspage")
        status = ((body or {}).get("component") or {}).get("status") if isinstance(body, dict) else None
        if status not in COMPONENT_STATUSES:
            self._bad(f"statuspage component: status {status!r}")
            return web.json_response({"message": "Unprocessable entity"}, status=422)
        self.components[cid] = status
        self.component_log.append((cid, status))
        return web.json_response({"id": cid, "page_id": self.page, "name": cid, "status": status})

    async def _sp_incident(self, request: web.Request) -> web.Response:
        if (denied := self._sp_auth(request)) is not None:
            return denied
        body = await self._json(request, "statuspage")
        inc = (body or {}).get("incident") if isinstance(body, dict) else None
        if not isinstance(inc, dict):
            return web.json_response({"message": "incident is required"}, status=400)
        for cid, st in (inc.get("components") or {}).items():
            if cid not in self.components or st not in COMPONENT_STATUSES:
                self._bad(f"statuspage incident: component {cid} {st!r}")
                return web.json_response({"message": "Unprocessable entity"}, status=422)
        if request.method == "POST":
            name = inc.get("name")
            if not isinstance(name, str) or not name.strip() or len(name) > 255:
                self._bad(f"statuspage incident: name {name!r:.40}")
                return web.json_response({"message": "Name can't be blank"}, status=422)
            iid = f"spinc{next(self._ids)}"
            self.sp_incidents[iid] = {"id": iid, **inc}
            return web.json_response(self.sp_incidents[iid], status=201)
        iid = request.match_info["iid"]
        if iid not in self.sp_incidents:
            return web.json_response({"message": "Incident not found"}, status=404)
        self.sp_incidents[iid].update(inc)
        return web.json_response(self.sp_incidents[iid])

    async def start(self) -> str:
        app = web.Application(middlewares=[self._mw])
        r = app.router
        r.add_route("*", "/services/{tail:.*}", self._slack)
        r.add_get("/rest/api/3/myself", self._jira_myself)
        r.add_post("/rest/api/3/issue", self._jira_create)
        r.add_post("/rest/api/3/issue/{key}/comment", self._jira_comment)
        r.add_route("*", "/rest/api/3/issue/{key}/transitions", self._jira_transitions)
        r.add_get("/v1/pages/{page}", self._sp_page)
        r.add_patch("/v1/pages/{page}/components/{cid}", self._sp_component)
        r.add_post("/v1/pages/{page}/incidents", self._sp_incident)
        r.add_patch("/v1/pages/{page}/incidents/{iid}", self._sp_incident)
        self._runner, self.url = await serve_app(app)
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
