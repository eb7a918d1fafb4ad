"""What each kind of action sends (../shared/integrations/REST-FACTS.md, sections 3 to 5),
and how an answer is judged: 2xx done; 429 (and Statuspage's 420), 408 and 5xx, or no
answer, tried again (after `Retry-After` when given); any other 4xx dead, with the reason.

Steps that must not be repeated remember they were done in the store's memos (an issue
created, a comment written, a Statuspage incident opened), so a job tried again after a
failure half way, a crash or another replica's lease does not do them twice."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from proxy.durations import header_seconds
from proxy.remediate import EXCERPT
from proxy.rules.actions import Action

__all__ = ["Done", "Http", "Memo", "Result", "run"]

Memo = Callable[[str, str | None], Awaitable[str | None]]  # store.memo(key, value), now given


@dataclass(slots=True)
class Result:
    how: str  # done | retry | dead
    error: str = ""
    after: float | None = None  # Retry-After, seconds
    tries: int | None = None  # tries at most for this wait (else the loop's TRIES)

    @staticmethod
    def done(note: str = "") -> Result:
        return Result("done", note)


Done = Result.done


class Failed(Exception):
    def __init__(self, result: Result) -> None:
        super().__init__(result.error)
        self.result = result


class Http:
    """One session for every action; an answer that is not 2xx raises Failed."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.timeout = timeout

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, what: str, method: str, url: str, *, headers: dict[str, str] | None = None,
                   json: Any = None, data: str | bytes | None = None, timeout: float | None = None,
                   encoded: bool = False) -> tuple[int, Any]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": "alert-proxy"})
        hdrs = dict(headers or {})
        if json is not None:
            data = orjson.dumps(json)
            hdrs.setdefault("Content-Type", "application/json")
        try:
            async with self._session.request(method, URL(url, encoded=encoded), data=data, headers=hdrs,
                                             timeout=aiohttp.ClientTimeout(total=timeout or self.timeout)) as r:
                raw = await r.read()
                if 200 <= r.status < 300:
                    try:
                        return r.status, orjson.loads(raw) if raw.strip()[:1] in (b"{", b"[") else raw.decode(
                            errors="replace")
                    except orjson.JSONDecodeError:
                        return r.status, raw.decode(errors="replace")
                text = raw[:EXCERPT].decode(errors="replace").strip()
                error = f"{what}: HTTP {r.status}: {text or r.reason}"
                if r.status in (408, 420, 429) or r.status >= 500:
                    raise Failed(Result("retry", error, header_seconds(r.headers)))
                raise Failed(Result("dead", error))
        except TimeoutError:
            raise Failed(Result("retry", f"{what}: no answer within {timeout or self.timeout:g}s")) from None
        except (aiohttp.ClientError, ValueError) as e:
            raise Failed(Result("retry", f"{what}: {type(e).__name__}: {e}")) from None


# -- the kinds ---------------------------------------------------------------------------
def _words(ev_type: str) -> str:
    return ev_type.removeprefix("incident.").replace("_", " ").replace(".", " ")


def _line(ctx: dict[str, Any]) -> str:
    inc, ev = ctx["incident"], ctx["event"]
    by = f" by {ev['agent']}" if ev.get("agent") else ""
    return f"{_words(ev['type']).capitalize()}{by}: #{inc.get('number', '?')} {inc.get('title', '')}".strip()


async def webhook(http: Http, a: Action, ctx: dict[str, Any], _memo: Memo, _job: str) -> Result:
    c = a.call
    assert c is not None
    await http.call(f"webhook {a.name}", c.method, c.url.render(ctx),
                    headers={k: t.render(ctx) for k, t in c.headers.items()},
                    data=c.body.render(ctx) if c.body is not None else None, timeout=c.timeout,
                    encoded=True)
    return Done()


async def slack(http: Http, a: Action, ctx: dict[str, Any], _memo: Memo, _job: str) -> Result:
    inc, ev = ctx["incident"], ctx["event"]
    link = f"<{inc['html_url']}|#{inc.get('number', '?')} {inc.get('title', '')}>" if inc.get("html_url") \
        else f"#{inc.get('number', '?')} {inc.get('title', '')}"
    icon = {"incident.triggered": ":red_circle:", "incident.acknowledged": ":large_yellow_circle:",
            "incident.resolved": ":large_green_circle:"}.get(ev["type"], ":information_source:")
    tpl = a.spec["text"]
    text = tpl.render(ctx) if tpl is not None else f"{icon} {_line(ctx)}"
    fields = [("Service", inc.get("service")), ("Status", inc.get("status")), ("Urgency", inc.get("urgency")),
              ("Priority", inc.get("priority")),
              ("Acknowledged by" if ev["type"] == "incident.acknowledged" else "By", ev.get("agent"))]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": (text if tpl is not None else
                                                                 f"{icon} *{_words(ev['type']).capitalize()}*: {link}")[:3000]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]}
                                       for k, v in fields if v][:10]}]
    if ev.get("note"):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": str(ev["note"])[:3000]}})
    blocks = [b for b in blocks if b.get("fields", True)]
    await http.call(f"slack {a.name}", "POST", a.spec["url"], json={"text": text[:40000], "blocks": blocks})
    return Done()


def _adf(lines: list[str], api: int) -> Any:
    if api == 2:
        return "\n".join(lines)
    return {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": line}]} for line in lines if line]}


def _sev(ctx: dict[str, Any]) -> str:
    prio = str(ctx["incident"].get("priority") or "").upper()
    if prio in ("P1", "SEV1"):
        return "SEV1"
    if prio in ("P2", "SEV2"):
        return "SEV2"
    sevs = {a.get("placed_severity") or a.get("severity") for a in ctx.get("alerts") or []}
    return "SEV1" if "critical" in sevs else "SEV2" if "error" in sevs else "SEV3"


async def jira(http: Http, a: Action, ctx: dict[str, Any], memo: Memo, job: str) -> Result:
    s, inc, ev = a.spec, ctx["incident"], ctx["event"]
    base = f"{s['site']}/rest/api/{s['api']}"
    auth = base64.b64encode(f"{s['email']}:{s['token']}".encode()).decode()
    headers = {"Authorization": f"Basic {auth}", "Accept": "application/json"}
    kept = f"jira:{a.name}:{inc['id']}"
    issue = await memo(kept, None)
    if ev["type"] in ("incident.triggered", "incident.reopened") and issue is None:
        sev = _sev(ctx)
        summary = s["summary"].render(ctx) if s["summary"] is not None else f"[{sev}] {inc.get('title', '')}"
        lines = [f"PagerDuty incident #{inc.get('number', '?')}: {inc.get('title', '')}", inc.get("html_url", ""),
                 f"Service: {inc.get('service') or '-'}; urgency: {inc.get('urgency') or '-'}; "
                 f"priority: {inc.get('priority') or '-'}"]
        lines += [f"- {x.get('summary') or x.get('labels')}" for x in (ctx.get("alerts") or [])[:20]]
        _, made = await http.call(f"jira {a.name} (create issue)", "POST", f"{base}/issue", headers=headers, json={
            "fields": {"project": {"key": s["project"]}, "summary": summary[:255],
                       "issuetype": {"name": s["issue_type"]}, "labels": ["pagerduty", sev],
                       "description": _adf(lines, s["api"])}})
        key = str(made.get("key", "")) if isinstance(made, dict) else ""
        await memo(kept, key)
        return Done(f"issue {key}")
    if issue is None:
        if ev["type"] != "incident.resolved":
            return Done("no issue")
        return Result("retry", f"jira {a.name}: no issue yet for incident {inc['id']} (its trigger "
                      "action has not run)", tries=8)  # (~4 min: an incident from before the action)
    step = f"jira-step:{job}"
    if await memo(step, None) is None:  # the comment, once
        by = f" by {ev['agent']}" if ev.get("agent") else ""
        text = (f"Resolved in PagerDuty{by} after {ctx.get('duration') or '?'}." if ev["type"] == "incident.resolved"
                else f"{_line(ctx)}" + (f"\n{ev['note']}" if ev.get("note") else ""))
        await http.call(f"jira {a.name} (comment {issue})", "POST", f"{base}/issue/{issue}/comment",
                        headers=headers, json={"body": _adf(text.split("\n"), s["api"])})
        await memo(step, "commented")
    if ev["type"] != "incident.resolved":
        return Done(f"commented on {issue}")
    _, got = await http.call(f"jira {a.name} (transitions of {issue})", "GET",
                             f"{base}/issue/{issue}/transitions", headers=headers)
    ts = got.get("transitions") or [] if isinstance(got, dict) else []
    want = s["done"].lower()
    found = [t for t in ts if str(t.get("name", "")).lower() == want
             or str((t.get("to") or {}).get("name", "")).lower() == want]
    if not found:
        names = ", ".join(f"{t.get('name')} -> {(t.get('to') or {}).get('name')}" for t in ts) or "none"
        return Result("dead", f"jira {a.name}: {issue} has no transition to {s['done']!r} (available: {names})")
    await http.call(f"jira {a.name} (transition {issue})", "POST", f"{base}/issue/{issue}/transitions",
                    headers=headers, json={"transition": {"id": str(found[0]["id"])}})
    return Done(f"{issue} -> {s['done']}")


async def statuspage(http: Http, a: Action, ctx: dict[str, Any], memo: Memo, _job: str) -> Result:
    s, inc, ev = a.spec, ctx["incident"], ctx["event"]
    if ev["type"] in ("incident.triggered", "incident.reopened"):
        status, opening = s["on_trigger"], True
    elif ev["type"] == "incident.resolved":
        status, opening = s["on_resolve"], False
    else:
        return Done("nothing for this event")
    # A trigger's job that failed for a while must not undo its incident's resolve that ran
    # meanwhile: the resolve is remembered, and a later trigger job of it does nothing.
    closed = f"statuspage-resolved:{a.name}:{inc['id']}"
    if opening and ev["type"] == "incident.triggered" and await memo(closed, None) is not None:
        return Done("the incident was resolved meanwhile")
    headers = {"Authorization": f"OAuth {s['api_key']}"}
    page = f"{s['url']}/pages/{s['page']}"
    if s["incident"]:
        kept = f"statuspage:{a.name}:{inc['id']}"
        sp = await memo(kept, None)
        comps = {c: status for c in s["components"]}
        if opening and sp is None:
            name = s["name"].render(ctx) if s["name"] is not None else str(inc.get("title", "Incident"))
            _, made = await http.call(f"statuspage {a.name} (open incident)", "POST", f"{page}/incidents",
                                      headers=headers, json={"incident": {
                                          "name": name[:255] or "Incident", "status": "investigating",
                                          "body": f"We are investigating: {name}"[:25000],
                                          "component_ids": s["components"], "components": comps}})
            await memo(kept, str(made.get("id", "")) if isinstance(made, dict) else "")
        elif not opening and sp:
            await http.call(f"statuspage {a.name} (resolve incident)", "PATCH", f"{page}/incidents/{sp}",
                            headers=headers, json={"incident": {"status": "resolved", "body": "Resolved.",
                                                                "components": comps}})
    for comp in s["components"]:
        await http.call(f"statuspage {a.name} (component {comp})", "PATCH", f"{page}/components/{comp}",
                        headers=headers, json={"component": {"status": status}})
    if not opening:
        await memo(closed, "1")
    return Done(f"components {status}")


RUNNERS = {"webhook": webhook, "slack": slack, "jira": jira, "statuspage": statuspage}


async def run(http: Http, a: Action, ctx: dict[str, Any], memo: Memo, job: str) -> Result:
    try:
        return await RUNNERS[a.kind](http, a, ctx, memo, job)
    except Failed as e:
        return e.result
