"""The console: server-rendered pages for on-call and ops (no JavaScript, no build step).

    /          overview: alerts in and pages out per hour (SVG), noise ratio, the noisiest
               alertnames, suppressed by reason, noise per rule and service
    /groups    open groups with their alerts and state, filtered by label, 100 a page
    /outbox    per routing key (by name): waiting, oldest, budget used; dead letters with
               a re-send button (POST, guarded against cross-site requests)
    /oncall    active and pending silences (expire one; make one, e.g. from a group's
               labels: /groups links here), and the heartbeats with their last arrival
    /rules     files, last reload and its errors, the rules in order

Admin pages: loopback only unless `--auth admin=...` (basic auth works in a browser).
Everything that came from an alert is escaped (Jinja2 autoescape): labels are input."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from jinja2 import Environment, PackageLoader, select_autoescape

from proxy import render, silences
from proxy.durations import parse_duration
from proxy.errors import InputError
from proxy.http import ADMIN, read_form
from proxy.jsontypes import JsonObject
from proxy.model import Group
from proxy.rules.matchers import parse_matchers

if TYPE_CHECKING:
    from proxy.clock import Clock
    from proxy.rules.live import LiveRules
    from proxy.silences import Silences
    from proxy.store import Store, Window

__all__ = ["Console", "View"]


@dataclass(frozen=True, slots=True)
class View:
    """What the console reads and may do: the proxy gives it this, never itself."""

    store: Store
    clock: Clock
    live: LiveRules
    window: Window
    body_timeout: float
    stats: Callable[[str], Awaitable[JsonObject]]  # the noise figures of the last `since`
    kick: Callable[[], None]  # the sender looks at the outbox now (dead letters re-sent)
    silences: Silences

PAGE = 100
_ENV = Environment(loader=PackageLoader("proxy.console", "templates"),
                   autoescape=select_autoescape(["html"], default=True), trim_blocks=True,
                   lstrip_blocks=True)


def _age(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def _secs(v: float | None) -> str:
    return "–" if v is None else _age(v)


def group_state(g: Group) -> tuple[str, str]:
    """A group's state as the console shows it, and its style."""
    held = g.state.held
    pd = g.state.pd.status if g.state.pd else ""
    if held == "remediation":
        return "held for remediation", "held"
    if held in ("folded", "flapping", "threshold", "muted", "settling"):
        return {"folded": "folded into a storm", "flapping": "flapping", "threshold":
                "below its threshold", "muted": "muted (inhibited or maintenance)",
                "settling": "resolved, waiting to be stable (flap: hold)"}[held], "held"
    if pd == "acknowledged":
        return "acknowledged in PagerDuty", "acknowledged"
    if pd == "resolved":
        return "resolved in PagerDuty", "resolved"
    if g.triggered:
        return "paged", "paged"
    return "waiting", "waiting"


def _matches(g: Group, terms: list[tuple[str, str]]) -> bool:
    for k, v in terms:
        if k == "rule":
            if g.rule != v:
                return False
        elif k == "state":
            if v not in group_state(g)[0]:
                return False
        elif k:
            if g.group_labels.get(k) != v:
                return False
        elif not (v in g.key or v in g.rule or any(v in x for x in g.group_labels.values())):
            return False
    return True


def _terms(q: str) -> list[tuple[str, str]]:
    out = []
    for word in q.split():
        k, sep, v = word.partition("=")
        out.append((k, v) if sep else ("", word))
    return out


def _chart(hours: list[JsonObject], width: int = 960, height: int = 160) -> JsonObject:
    n = max(1, len(hours))
    step = width / n
    bw = max(1.0, step * 0.4)
    top = max([1, *(h["in"] for h in hours), *(h["pages"] for h in hours)])
    bars = []
    for i, h in enumerate(hours):
        label = datetime.fromtimestamp(h["hour"], UTC).strftime("%d %b %H:00")
        h_in, h_out = height * h["in"] / top, height * h["pages"] / top
        bars.append({"x": round(i * step + 2, 1), "y_in": round(height - h_in, 1), "h_in": round(h_in, 1),
                     "y_out": round(height - h_out, 1), "h_out": round(h_out, 1), "n_in": h["in"],
                     "n_out": h["pages"], "label": label,
                     "tick": datetime.fromtimestamp(h["hour"], UTC).strftime("%H:00")
                     if i % max(1, n // 8) == 0 else ""})
    return {"width": width, "height": height, "bw": round(bw, 1), "bars": bars, "max": top}


class Console:
    def __init__(self, view: View) -> None:
        self.view = view
        self._token = hmac.new(secrets.token_bytes(32), b"console", hashlib.sha256).hexdigest()

    def routes(self) -> list[web.RouteDef]:
        for h in (self.overview, self.groups, self.outbox, self.rules, self.retry, self.oncall,
                  self.silence, self.expire):
            h.__func__.source = ADMIN  # type: ignore[attr-defined]  # the admin guard's scope
        return [web.get("/", self.overview), web.get("/groups", self.groups),
                web.get("/outbox", self.outbox), web.get("/rules", self.rules),
                web.post("/outbox/retry", self.retry), web.get("/oncall", self.oncall),
                web.post("/oncall/silence", self.silence), web.post("/oncall/expire", self.expire)]

    async def oncall(self, request: web.Request, message: str = "") -> web.Response:
        v = self.view
        await v.silences.refresh(force=True)
        now = v.clock.now()
        silences = [{"id": s.id, "matchers": [str(m) for m in s.matchers], "state": s.state(now),
                     "ends": f"in {_age(s.ends_at - now)}", "created_by": s.created_by,
                     "comment": s.comment} for s in v.silences.all() if s.state(now) != "expired"]
        states = await v.store.heartbeats()
        beats = []
        for hb in v.live.current.heartbeats.values():
            last, paged = states.get(hb.name, (None, False))
            beats.append({"name": hb.name, "fed_by": ", ".join(map(str, hb.matchers)) or
                          f"POST /v1/heartbeat/{hb.name}", "limit": f"{_age(hb.every)} + {_age(hb.grace)}",
                          "last": "not yet" if last is None else f"{_age(now - last)} ago",
                          "state": "paged" if paged else "ok", "css": "firing" if paged else "resolved"})
        return self._page("oncall.html", "/oncall", "Silences & heartbeats", silences=silences,
                          heartbeats=beats, csrf=self._token, message=message,
                          matchers=request.query.get("matchers", ""))

    async def _form(self, request: web.Request) -> dict[str, str]:
        form = await read_form(request, self.view.body_timeout)
        if not hmac.compare_digest(form.get("csrf", ""), self._token):
            raise InputError(["cross-site request refused (change silences from the console)"], 403)
        return form

    async def silence(self, request: web.Request) -> web.Response:
        """A new silence from the console's form (its token, as the re-send button)."""
        form = await self._form(request)
        try:
            matchers = parse_matchers(form.get("matchers", ""))
            seconds = parse_duration(form.get("duration", "2h"))
        except ValueError as e:
            raise InputError([str(e)]) from None
        now = self.view.clock.now()
        body = {"matchers": [silences.matcher_api(m) for m in matchers], "startsAt": silences.iso(now),
                "endsAt": silences.iso(now + seconds), "createdBy": form.get("created_by", ""),
                "comment": form.get("comment", "")}
        sid = await self.view.silences.post(body, f"the console ({request.remote})")
        return await self.oncall(request, message=f"silence {sid} made")

    async def expire(self, request: web.Request) -> web.Response:
        form = await self._form(request)
        try:
            await self.view.silences.expire(form.get("id", ""), f"the console ({request.remote})")
        except LookupError:
            raise InputError(["no such silence"], 404) from None
        return await self.oncall(request, message="silence expired")

    def _page(self, name: str, path: str, title: str, **ctx: Any) -> web.Response:
        html = _ENV.get_template(name).render(page=path, title=title, secs=_secs,
                                              store=self.view.store.url.split("@")[-1].split("?")[0],
                                              **ctx)
        return web.Response(text=html, content_type="text/html",
                            headers={"Content-Security-Policy": "default-src 'none'; style-src "
                                     "'unsafe-inline'; img-src 'self'; form-action 'self'",
                                     "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"})

    async def overview(self, request: web.Request) -> web.Response:
        since = request.query.get("since", "24h")
        s = await self.view.stats(since)
        stats = await self.view.store.stats(self.view.clock.now(), self.view.window)
        return self._page("overview.html", "/", "Overview", s=s, since=since,
                          groups_open=stats.groups_open, chart=_chart(s["hours"]))

    async def groups(self, request: web.Request) -> web.Response:
        q = request.query.get("q", "").strip()
        try:
            page_no = max(1, int(request.query.get("page", "1")))
        except ValueError:
            raise InputError(["'page' must be a number"]) from None
        heads = [g for g in await self.view.store.heads() if _matches(g, _terms(q))]
        heads.sort(key=lambda g: -g.opened_at)
        total = len(heads)
        shown = heads[(page_no - 1) * PAGE:page_no * PAGE]
        now = self.view.clock.now()
        rows = []
        for g in await self.view.store.load_many([g.key for g in shown]):
            state, css = group_state(g)
            alerts = sorted(g.alerts.values(), key=lambda a: not a.firing)
            rows.append({"key": g.key, "state": state, "css": css, "rule": g.rule,
                         "labels": {"event": render.group_name(g)} if "fingerprint" in g.group_labels
                         else {k: v for k, v in g.group_labels.items() if v},
                         "n_alerts": len(g.alerts), "age": _age(now - g.opened_at),
                         "silence": ", ".join(f"{k}={orjson.dumps(v).decode()}"
                                              for k, v in sorted(g.group_labels.items()) if v),
                         "alerts": [{"status": a.status, "summary": a.alert.summary,
                                     "labels": a.labels} for a in alerts[:20]],
                         "more": max(0, len(alerts) - 20)})
        pages = list(range(1, (total + PAGE - 1) // PAGE + 1))
        if len(pages) > 15:
            pages = sorted({1, 2, *range(max(1, page_no - 3), page_no + 4), pages[-2], pages[-1]}
                           & set(pages))
        return self._page("groups.html", "/groups", "Groups", groups=rows, total=total, q=q,
                          page_no=page_no, pages=pages, shown_from=min(total, (page_no - 1) * PAGE + 1),
                          shown_to=min(total, page_no * PAGE))

    async def outbox(self, request: web.Request, message: str = "") -> web.Response:
        p = self.view
        now = p.clock.now()
        window = p.window
        stats = await p.store.stats(now, window)
        keys = [{"name": name, "depth": k.depth, "oldest": _age(now - k.oldest_enqueued_at) if k.depth else "–",
                 "sent": k.sent_in_window, "used_pct": min(100, round(100 * k.sent_in_window / window.limit))}
                for name, k in sorted(stats.keys.items())]
        dead = await p.store.dead_letters(limit=200)
        return self._page("outbox.html", "/outbox", "Outbox", keys=keys, dead=dead, limit=window.limit,
                          csrf=self._token, message=message)

    async def retry(self, request: web.Request) -> web.Response:
        """Re-send dead letters: a form POST from this console only (its token; the admin
        guard refused a cross-site request already)."""
        form = await read_form(request, self.view.body_timeout)
        if not hmac.compare_digest(form.get("csrf", ""), self._token):
            raise InputError(["cross-site request refused (re-send dead letters from the console)"], 403)
        seq = form.get("seq")
        try:
            seqs = [int(str(seq))] if seq else None
        except ValueError:
            raise InputError(["'seq' must be a number"]) from None
        n = await self.view.store.requeue_dead(seqs)
        self.view.kick()
        return await self.outbox(request, message=f"{n} event(s) queued to be sent again.")

    async def rules(self, request: web.Request) -> web.Response:
        live = self.view.live
        rs = live.current
        rows = []
        for depth, r in [*rs.walk(), (0, rs.defaults)]:
            more = [k for k, on in (("drop", r.drop), ("continue", r.cont), ("flap", r.flap),
                                    ("remediate", r.remediate), ("min_alerts", r.min_alerts),
                                    ("for", r.for_), ("stale_after", r.stale_after),
                                    ("on_growth: update", r.on_growth == "update")) if on]
            rows.append({"name": "\u00a0\u00a0" * (depth - 1) + "↳ " * bool(depth) + r.name, "match": ", ".join(map(str, r.matchers)) or "(everything)",
                         "group_by": ", ".join(r.group_by),
                         "timing": f"wait {r.group_wait:g}s · interval {r.group_interval:g}s · "
                                   f"repeat {r.repeat_interval:g}s",
                         "more": ", ".join(more), "where": r.where or "defaults"})

        def when(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") + \
                f" ({_age(time.time() - t)} ago)"

        return self._page("rules.html", "/rules", "Rules", rules=rows, files=[str(f) for f in live.files()],
                          loaded=when(live.loaded_at), attempt=when(live.last_attempt_at),
                          errors=live.last_errors)
