"""HTTP plumbing shared by every path: reading a body, one middleware that turns the
proxy's errors into answers, and one guard for the admin paths.

    InputError   -> 4xx, JSON naming the problem (PagerDuty's own bodies on /v2/ paths)
    StoreError   -> 503 (senders retry: nothing accepted is ever lost)
    aiohttp 4xx  -> the same JSON shape (404, 405, ...)

Admin paths (reload, the status API, the console) answer loopback clients only, unless
admin credentials are configured (`--auth admin=...`): then they answer whoever has them.
Whoever asks, a browser must not be made to ask for someone else:
- the Host must be one the proxy answers to (an IP address, `localhost`, a --listen host
  or an --external-host): a page whose name an attacker points at 127.0.0.1 (DNS
  rebinding) would otherwise read the status API from the operator's own browser;
- a request that changes something (not GET/HEAD) from a browser must come from a page of
  the proxy's own (`Sec-Fetch-Site`, `Origin`): any web page can post a form anywhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import orjson
from aiohttp import web

from proxy.auth import Auth
from proxy.errors import InputError, NotJSON, StoreError, StoreFull, TooLarge, Unauthorized
from proxy.jsontypes import JsonObject
from proxy.logs import Health
from proxy.metrics import Metrics

__all__ = ["ADMIN", "MAX_BODY", "Hosts", "admin_middleware", "error_middleware", "json_response",
           "read_body", "read_form", "read_json", "source_of"]

log = logging.getLogger("alert_proxy")
MAX_BODY = 512_000  # what PagerDuty and Alertmanager allow for one event
ADMIN = "admin"
_JSON_TYPES = ("application/json", "text/json")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def source_of(request: web.Request) -> str:
    """The metric label of the sender: set by each route (see app.routes)."""
    route = request.match_info.route
    return str(getattr(route.handler, "source", "other"))


_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def _decompress(raw: bytes, encoding: str) -> bytes:
    """gzip or deflate, never more than MAX_BODY bytes out (a 390 KB gzip bomb is 413)."""
    for wbits in (_ENCODINGS[encoding], -zlib.MAX_WBITS) if encoding == "deflate" else (_ENCODINGS[encoding],):
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(raw, MAX_BODY + 1)
            if len(out) > MAX_BODY or d.unconsumed_tail:
                raise TooLarge([f"body is larger than {MAX_BODY} bytes once decompressed"])
            if not d.eof:
                raise InputError([f"body is not complete {encoding} data (it ends too early)"])
            return out
        except zlib.error:
            continue
    raise InputError([f"body is not valid {encoding} data (Content-Encoding: {encoding})"])


async def read_body(request: web.Request, timeout: float = 10.0, text_ok: bool = False) -> bytes:
    """The body of a JSON request: content type, size (before and after decompression) and
    the time it takes to arrive checked. aiohttp's own decompression is off: a body that
    does not decompress is a 400 like any other bad input. `text_ok`: text/plain is taken
    too (Amazon SNS sends its JSON so)."""
    ctype = request.content_type
    if ctype not in _JSON_TYPES and not ctype.endswith("+json") and not (text_ok and ctype == "text/plain"):
        raise InputError([f"Content-Type must be application/json (got {ctype or 'none'})"], 415)
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity", *_ENCODINGS):
        raise InputError([f"Content-Encoding {encoding!r} is not supported (gzip, deflate)"], 415)
    if (request.content_length or 0) > MAX_BODY:
        raise TooLarge([f"body is larger than {MAX_BODY} bytes"])
    try:
        if request.content.is_eof():  # all here already (most bodies): no timer to arm
            raw = await request.read()
        else:
            raw = await asyncio.wait_for(request.read(), timeout)
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge([f"body is larger than {MAX_BODY} bytes"]) from None
    except TimeoutError:
        raise InputError([f"the body did not arrive within {timeout:g} s (does Content-Length say "
                          "more than was sent?)"], 408) from None
    except (aiohttp.ClientPayloadError, ConnectionError) as e:
        raise InputError([f"the body could not be read: {e}"], 400) from None
    return raw if encoding in ("", "identity") else _decompress(raw, encoding)


MAX_FORM = 64 * 1024


async def read_form(request: web.Request, timeout: float = 10.0) -> dict[str, str]:
    """A form a page of the console posts (application/x-www-form-urlencoded, UTF-8): each
    field's first value. Anything else (multipart, another charset, a large body) is a 4xx
    naming the problem."""
    if request.content_type != "application/x-www-form-urlencoded":
        raise InputError([f"Content-Type must be application/x-www-form-urlencoded (got "
                          f"{request.content_type or 'none'})"], 415)
    if (request.content_length or 0) > MAX_FORM:
        raise TooLarge([f"form is larger than {MAX_FORM} bytes"])
    try:
        raw = await asyncio.wait_for(request.content.read(MAX_FORM + 1), timeout)
    except TimeoutError:
        raise InputError([f"the form did not arrive within {timeout:g} s"], 408) from None
    except (aiohttp.ClientPayloadError, ConnectionError) as e:
        raise InputError([f"the form could not be read: {e}"], 400) from None
    if len(raw) > MAX_FORM:
        raise TooLarge([f"form is larger than {MAX_FORM} bytes"])
    try:
        fields = parse_qs(raw.decode("ascii"), keep_blank_values=True, max_num_fields=100,
                          encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as e:
        raise InputError([f"the form is not URL-encoded UTF-8: {e}"]) from None
    return {k: v[0] for k, v in fields.items()}


async def read_json(request: web.Request, auth: Auth, source: str, timeout: float = 10.0) -> Any:
    """Auth, content type, size, JSON: an InputError (4xx) naming the problem."""
    if not auth.allows(source, request.headers.get("Authorization")):
        raise Unauthorized([f"missing or wrong credentials for {source} (Authorization header)"])
    raw = await read_body(request, timeout)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise NotJSON() from None


def _pagerduty_body(e: InputError) -> JsonObject:
    """PagerDuty's own answer bodies for a refused event (FACTS.md)."""
    if isinstance(e, NotJSON):
        return {"status": "Unrecognized object", "message": "Event object format is unrecognized",
                "errors": ["JSON parse error"]}
    return {"status": "invalid event", "message": "Event object is invalid", "errors": e.errors}


class _Refusals:
    """Refused credentials and signatures are logged (a probe, a rotated secret nobody told
    the sender about), at most once per 10 s per source and status, with how many were not
    logged since; never what was sent."""

    EVERY = 10.0

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], tuple[float, int]] = {}

    def __call__(self, request: web.Request, source: str, e: InputError) -> None:
        now = time.monotonic()
        at, quiet = self._last.get((source, e.status), (0.0, 0))
        if now - at < self.EVERY:
            self._last[(source, e.status)] = (at, quiet + 1)
            return
        self._last[(source, e.status)] = (now, 0)
        log.warning("request refused", extra={"fields": {
            "source": source, "status": e.status, "path": request.path, "remote": request.remote,
            "reason": e.errors[0], "refused_since_last_line": quiet}})


def error_middleware(metrics: Metrics, store_health: Health | None = None) -> Any:
    refused = _Refusals()

    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except InputError as e:
            source = source_of(request)
            metrics.requests_rejected.labels(source, str(e.status)).inc()
            if e.status in (401, 403):
                refused(request, source, e)
            if request.path.startswith("/v2/"):
                return json_response(_pagerduty_body(e), e.status)
            resp = json_response({"status": "error", "message": e.errors[0], "errors": e.errors},
                                 e.status)
            if isinstance(e, Unauthorized) and e.challenge:
                resp.headers["WWW-Authenticate"] = e.challenge
            if e.status in (400, 408, 413):
                resp.force_close()  # what is left of the body is not read: end the connection
            return resp
        except StoreError as e:
            metrics.requests_rejected.labels(source_of(request), "503").inc()
            if isinstance(e, StoreFull):
                log.warning("store full; asking the sender to retry", extra={"fields": {
                    "path": request.path, "error": str(e)}})  # (logged per request: it is rare)
            elif store_health is not None:  # once when it goes down, once when it is back
                store_health.failed(str(e), during=request.path)
            message = str(e) if isinstance(e, StoreFull) else "store unavailable, retry later"
            return json_response({"status": "error", "message": message, "errors": [str(e)]}, 503)
        except web.HTTPException as e:
            if e.status >= 400:
                return json_response({"status": "error", "message": f"{e.reason}: {request.method} "
                                      f"{request.path}", "errors": [e.reason]}, e.status)
            raise

    return errors


def _loopback(request: web.Request) -> bool:
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class Hosts:
    """The names the proxy answers admin requests as: any IP address, `localhost`, the
    hosts it listens on, and those given with --external-host (the name users reach it by
    behind a proxy or a DNS name)."""

    def __init__(self, names: list[str]) -> None:
        self.names = {"localhost", *(n.strip().lower().rstrip(".") for n in names if n.strip())}

    def allows(self, host: str) -> bool:
        name = host.lower()
        if name.startswith("["):  # [v6]:port
            name = name[1:].split("]", 1)[0]
        elif name.count(":") == 1:
            name = name.rsplit(":", 1)[0]
        name = name.rstrip(".")
        if name in self.names:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True


def _cross_site(request: web.Request, hosts: Hosts) -> bool:
    """A browser says where a request comes from; a page of another site may not change
    anything here. Clients that are not browsers send neither header."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if origin == "null" or "://" not in origin:
        return True
    return origin.split("://", 1)[1].rstrip("/").lower() != request.host.lower()


def admin_middleware(auth: Auth, hosts: Hosts | None = None) -> Any:
    """The one guard of every admin route (routes whose handler says `source = "admin"`)."""
    hosts = hosts or Hosts([])

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if source_of(request) == ADMIN:
            if not hosts.allows(request.host):
                raise InputError([f"Host {request.host!r} is not a name this proxy answers admin "
                                  "requests to (an IP address, localhost, a --listen host, or "
                                  "one given with --external-host)"], 403)
            if request.method not in _SAFE_METHODS and _cross_site(request, hosts):
                raise InputError(["cross-site request refused: admin requests that change "
                                  "something are taken from the proxy's own pages and from "
                                  "clients that are not browsers"], 403)
            if auth.configured(ADMIN):
                if not auth.allows(ADMIN, request.headers.get("Authorization")):
                    challenge = 'Basic realm="alert-proxy", charset="UTF-8"' if auth.is_basic(ADMIN) else None
                    raise Unauthorized(["missing or wrong credentials for admin"], challenge)
            elif not _loopback(request):
                raise InputError(["admin paths answer loopback clients only; give credentials "
                                  "with --auth admin=... to open them"], 403)
        return await handler(request)

    return guard


def source(name: str) -> Callable[[Any], Any]:
    """Tag a handler with the sender it serves: the metric label and the auth scope."""

    def tag(fn: Any) -> Any:
        fn.source = name
        return fn

    return tag
