"""The part of Alertmanager's API v2 that amtool speaks, so that the real `amtool` works
against the proxy unchanged: `GET /api/v2/status`, silences (`GET/POST /api/v2/silences`,
`GET/DELETE /api/v2/silence/{id}`) and `GET /api/v2/alerts`. Bodies as Alertmanager's
OpenAPI file (api/v2/openapi.yaml) has them; a bad request is a 400 whose body is the
reason as a JSON string, as Alertmanager answers it. Every path is an admin path
(http.admin_middleware): loopback only unless `--auth admin=...` is given, and amtool
sends basic auth with `--http.config.file`.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass

import orjson
from aiohttp import web

from proxy import __version__
from proxy.clock import Clock
from proxy.errors import InputError
from proxy.http import ADMIN, source
from proxy.jsontypes import JsonObject
from proxy.model import GroupAlert
from proxy.rules.matchers import Matcher, matches_all, parse_matchers
from proxy.silences import Silences, iso
from proxy.store import Store

__all__ = ["AlertmanagerApi"]

_BOOLS = {"true": True, "false": False}


def _reason(message: str, status: int = 400) -> web.Response:
    return web.json_response(message, status=status)


def _who(request: web.Request) -> str:
    """The admin credentials' user name, else the client's address."""
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("basic "):
        try:
            return base64.b64decode(header[6:], validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            pass
    return request.remote or "?"


def _filters(request: web.Request) -> list[Matcher]:
    out: list[Matcher] = []
    for text in request.query.getall("filter", []):
        try:
            out += parse_matchers(text)
        except ValueError as e:
            raise InputError([f"bad matcher format: {text}: {e}"]) from None
    return out


def _flag(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "true").lower()
    if raw not in _BOOLS:
        raise InputError([f"{name} must be true or false"])
    return _BOOLS[raw]


@dataclass
class AlertmanagerApi:
    silences: Silences
    store: Store
    clock: Clock
    started: float  # epoch seconds

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v2/status", self.h_status),
            web.get("/api/v2/silences", self.h_silences),
            web.post("/api/v2/silences", self.h_post_silence),
            web.get("/api/v2/silence/{id}", self.h_silence),
            web.delete("/api/v2/silence/{id}", self.h_expire),
            web.get("/api/v2/alerts", self.h_alerts),
        ]

    @source(ADMIN)
    async def h_status(self, _request: web.Request) -> web.Response:
        return web.json_response({
            "cluster": {"name": "alert-proxy", "status": "ready", "peers": []},
            "versionInfo": {"version": __version__, "revision": "alert-proxy", "branch": "main",
                            "buildUser": "alert-proxy", "buildDate": "", "goVersion": "none (Python)"},
            "config": {"original": ""}, "uptime": iso(self.started)})

    @source(ADMIN)
    async def h_silences(self, request: web.Request) -> web.Response:
        try:
            filters = _filters(request)
        except InputError as e:
            return _reason("; ".join(e.errors))
        await self.silences.refresh()
        now = self.clock.now()
        found = [s.to_api(now) for s in self.silences.all()
                 if matches_all(filters, {m.name: m.value for m in s.matchers})]
        return web.json_response(found)

    @source(ADMIN)
    async def h_post_silence(self, request: web.Request) -> web.Response:
        try:
            try:
                body = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                raise InputError(["body is not valid JSON (a postableSilence)"]) from None
            sid = await self.silences.post(body, _who(request))
        except InputError as e:
            return _reason("; ".join(e.errors))
        except LookupError as e:
            return _reason(f"silence {e.args[0]} not found", 404)
        return web.json_response({"silenceID": sid})

    @source(ADMIN)
    async def h_silence(self, request: web.Request) -> web.Response:
        await self.silences.refresh(force=True)
        s = self.silences.get(request.match_info["id"])
        if s is None:
            return _reason("silence not found", 404)
        return web.json_response(s.to_api(self.clock.now()))

    @source(ADMIN)
    async def h_expire(self, request: web.Request) -> web.Response:
        try:
            await self.silences.expire(request.match_info["id"], _who(request))
        except LookupError:
            return _reason("silence not found", 404)
        except InputError as e:
            return _reason("; ".join(e.errors))
        return web.json_response(None)

    @source(ADMIN)
    async def h_alerts(self, request: web.Request) -> web.Response:
        """The firing alerts the groups hold (each once), with the silences that mute them."""
        try:
            filters = _filters(request)
            active, silenced = _flag(request, "active"), _flag(request, "silenced")
        except InputError as e:
            return _reason("; ".join(e.errors))
        await self.silences.refresh()
        now = self.clock.now()
        live = self.silences.active(now)
        out: dict[str, JsonObject] = {}
        for g in await self.store.groups():
            for fp, a in g.alerts.items():
                if not a.firing or fp in out or not matches_all(filters, a.labels):
                    continue
                by = self.silences.silenced_by(a.labels, now, live)
                if (by and silenced) or (not by and active):
                    out[fp] = _gettable(a, fp, g.rule, by, g.opened_at)
        return web.json_response(list(out.values()))


def _gettable(a: GroupAlert, fp: str, receiver: str, silenced_by: list[str], opened_at: float) -> JsonObject:
    """Alertmanager's gettableAlert."""
    starts = a.alert.starts_at or iso(opened_at)
    return {"labels": a.labels, "annotations": a.alert.annotations, "startsAt": starts,
            "endsAt": a.alert.ends_at or "0001-01-01T00:00:00.000Z", "updatedAt": iso(time.time()),
            "fingerprint": fp, "receivers": [{"name": receiver}], "generatorURL": "",
            "status": {"state": "suppressed" if silenced_by else "active",
                       "silencedBy": silenced_by, "inhibitedBy": [], "mutedBy": []}}
