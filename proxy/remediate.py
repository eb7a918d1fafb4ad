"""Remediation before paging: one HTTP call to an automatic fix (Rundeck, AWX, StackStorm,
any HTTP endpoint), and its outcome, which the page carries if the fix did not work.

    2xx answer            ok       the page waits for `wait`: resolved by then, no page
    other answer          failed   page at once
    no answer in time     timeout  page at once
    refused, reset, DNS   error    page at once

The request is built from the rule when the call is made (never stored: its headers may
hold tokens); the outcome keeps the status, the time and a short excerpt of the answer,
with the rule's secrets masked."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from proxy.jsontypes import JsonObject
from proxy.redact import mask

__all__ = ["Call", "Caller", "HttpCaller", "Outcome"]

EXCERPT = 200  # characters of the answer kept


@dataclass(slots=True)
class Call:
    url: str
    method: str
    headers: dict[str, str]
    body: str | None
    timeout: float
    secrets: tuple[str, ...] = ()


@dataclass(slots=True)
class Outcome:
    outcome: str  # ok | failed | timeout | error
    http_status: int | None = None
    seconds: float = 0.0
    answer: str = ""

    def to_dict(self) -> JsonObject:
        return {"outcome": self.outcome, "http_status": self.http_status,
                "seconds": round(self.seconds, 3), "answer": self.answer}


def _clean(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, mask(s))
    return text[:EXCERPT]


Caller = Callable[[Call], Awaitable[Outcome]]


@dataclass
class HttpCaller:
    """Makes the call over HTTP (one session for all calls)."""

    session: aiohttp.ClientSession | None = field(default=None)

    async def __call__(self, call: Call) -> Outcome:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(headers={"User-Agent": "alert-proxy"})
        t0 = time.perf_counter()
        try:
            # encoded: the URL's values were encoded by its template; yarl must not undo a
            # %2E%2E or a %2F (a label cannot climb out of its path segment)
            async with self.session.request(call.method, URL(call.url, encoded=True), data=call.body,
                                            headers=call.headers,
                                            timeout=aiohttp.ClientTimeout(total=call.timeout)) as r:
                text = await r.text(errors="replace")
                kind = "ok" if 200 <= r.status < 300 else "failed"
                return Outcome(kind, r.status, time.perf_counter() - t0, _clean(text, call.secrets))
        except TimeoutError:
            return Outcome("timeout", None, time.perf_counter() - t0,
                           f"no answer within {call.timeout:g}s")
        except (aiohttp.ClientError, ValueError) as e:  # ValueError: a URL or header aiohttp refuses
            return Outcome("error", None, time.perf_counter() - t0,
                           _clean(f"{type(e).__name__}: {e}", call.secrets))

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
