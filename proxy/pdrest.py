"""A client of PagerDuty's REST API v2 (proxy -> api.pagerduty.com), for what the Events
API cannot do: find the incident behind a dedup_key, read its state back (pdsync.py), add
notes to its timeline (notes.py), and check a token (doctor.py).

The contract is ../shared/integrations/REST-FACTS.md, section 1: `Authorization: Token
token=<key>`, `Accept: application/vnd.pagerduty+json;version=2`, JSON bodies, `From: <a
user's email>` on writes; classic pagination (limit at most 100, offset + limit at most
10,000); 960 requests a minute per key, a 429 telling when the window resets in
`ratelimit-reset` (Retry-After is not documented for REST, so it is read only as a
fallback). The token never appears in a log line or an error."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from proxy.durations import header_seconds
from proxy.pacing import Pacer

__all__ = ["API_URL", "APIError", "PagerDutyAPI", "incident_time"]

log = logging.getLogger("alert_proxy")
API_URL = "https://api.pagerduty.com"
ACCEPT = "application/vnd.pagerduty+json;version=2"
PAGE = 100  # the largest page PagerDuty gives
MAX_OFFSET = 10_000  # offset + limit beyond this is a 400
# Requests a minute at most: PagerDuty allows 960 per key, and the same key may serve
# other tools (and other replicas of the proxy) in the same minute.
PER_MINUTE = 480


class APIError(Exception):
    """PagerDuty answered an error (or could not be reached): `status` 0 when unreachable."""

    def __init__(self, status: int, message: str, code: int | None = None) -> None:
        super().__init__(f"{status or 'unreachable'}: {message}" + (f" (code {code})" if code else ""))
        self.status, self.message, self.code = status, message, code


def incident_time(text: Any) -> float:
    """Seconds since the epoch of one of PagerDuty's ISO 8601 times (0 when absent)."""
    if not isinstance(text, str) or not text:
        return 0.0
    try:
        return datetime.fromisoformat(text).timestamp()  # (3.11 reads "Z")
    except ValueError:
        return 0.0


class PagerDutyAPI:
    def __init__(self, token: str, from_email: str = "", url: str = API_URL, *,
                 per_minute: int = PER_MINUTE, timeout: float = 10.0, tries: int = 4,
                 backoff: float = 1.0) -> None:
        self.url, self.from_email = url.rstrip("/"), from_email
        self._token = token
        self._pace = Pacer(60.0 / per_minute)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._tries, self._backoff = tries, backoff
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0  # sent, for tests and the sync's summary

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, params: list[tuple[str, str]] | None = None,
                      body: Any = None) -> Any:
        """The answer's JSON; APIError on a 4xx, or after the tries on 429, 5xx, 408 or a
        connection that failed (429s wait for `ratelimit-reset`)."""
        headers = {"Authorization": f"Token token={self._token}", "Accept": ACCEPT}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        if method != "GET":
            if not self.from_email:
                raise APIError(400, "a write needs the email of a PagerDuty user in the From "
                               "header: set --pagerduty-from")
            headers["From"] = self.from_email
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        err = APIError(0, "no try made")
        for attempt in range(self._tries):
            await self._pace.turn()
            self.requests += 1
            try:
                async with self._session.request(method, self.url + path, params=params,
                                                 data=data, headers=headers) as resp:
                    raw = await resp.read()
                    if resp.status < 300:
                        return orjson.loads(raw) if raw else {}
                    err = _error(resp.status, raw)
                    if resp.status == 429:
                        wait = header_seconds(resp.headers, "ratelimit-reset") or header_seconds(
                            resp.headers) or self._backoff * 2 ** attempt
                    elif resp.status >= 500 or resp.status == 408:
                        wait = self._backoff * 2 ** attempt
                    else:
                        raise err
            except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as e:
                err = APIError(0, f"{type(e).__name__}: {e}".replace(self._token, "…"))
                wait = self._backoff * 2 ** attempt
            if attempt + 1 < self._tries:
                log.warning("PagerDuty REST API: trying again", extra={"fields": {
                    "path": path, "error": str(err), "in_s": round(wait, 2)}})
                await asyncio.sleep(min(wait, 60.0))
        raise err

    async def paged(self, path: str, field: str, params: list[tuple[str, str]]) -> AsyncIterator[Any]:
        """Every item of a classic-paginated list (up to PagerDuty's 10,000)."""
        offset = 0
        while offset + PAGE <= MAX_OFFSET:
            page = await self.request("GET", path, [*params, ("limit", str(PAGE)),
                                                    ("offset", str(offset))])
            items = page.get(field) or []
            for item in items:
                yield item
            if not page.get("more") or not items:
                return
            offset += len(items)

    # -- what the proxy asks -------------------------------------------------------------
    async def abilities(self) -> list[str]:
        return list((await self.request("GET", "/abilities")).get("abilities") or [])

    async def open_incidents(self) -> list[Any]:
        """Every triggered or acknowledged incident, whatever its age."""
        return [i async for i in self.paged("/incidents", "incidents", [
            ("statuses[]", "triggered"), ("statuses[]", "acknowledged"), ("date_range", "all")])]

    async def incident_for(self, dedup_key: str) -> Any | None:
        """The newest incident of a dedup_key (a resolved key's next trigger opens a new
        one), or None while PagerDuty has not made it (the Events API answers first)."""
        found = [i async for i in self.paged("/incidents", "incidents", [
            ("incident_key", dedup_key), ("date_range", "all")])]
        return max(found, default=None, key=lambda i: (  # (numbers grow: ties within a second)
            incident_time(i.get("created_at")), i.get("incident_number") or 0))

    async def notes(self, incident_id: str) -> list[str]:
        """The contents of an incident's notes."""
        got = await self.request("GET", f"/incidents/{incident_id}/notes")
        return [str(n.get("content", "")) for n in got.get("notes") or []]

    async def add_note(self, incident_id: str, content: str) -> None:
        await self.request("POST", f"/incidents/{incident_id}/notes", body={"note": {"content": content}})


def _error(status: int, raw: bytes) -> APIError:
    """PagerDuty's error body: {"error": {"message", "code", "errors"}} (or a string)."""
    try:
        e = orjson.loads(raw).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        e = None
    if isinstance(e, dict):
        detail = "; ".join(str(x) for x in e.get("errors") or [])
        code = e.get("code") if isinstance(e.get("code"), int) else None
        return APIError(status, str(e.get("message", "")) + (f": {detail}" if detail else ""), code)
    if isinstance(e, str):
        return APIError(status, e)
    return APIError(status, raw[:200].decode(errors="replace") or "no body")
