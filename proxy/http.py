"""HTTP plumbing shared by every path: reading a body, one middleware that turns the
proxy's errors into answers, and one guard for the admin paths.

    InputError   -> 4xx, JSON naming the problem (PagerDuty's own bodies on /v2/ paths)
    StoreError   -> 503 (senders retry: nothing accepted is ever lost)
    aiohttp 4xx  -> the same JSON shape (404, 405, ...)

Admin paths (reload, the status API, the console) answer loopback clients only, unless
admin credentials are configured (`--auth admin=...`): then they answer whoever has them.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from proxy.auth import Auth
from proxy.errors import InputError, NotJSON, StoreError, TooLarge, Unauthorized
from proxy.metrics import Metrics

__all__ = ["ADMIN", "MAX_BODY", "admin_middleware", "error_middleware", "json_response", "read_body",
           "read_json", "source_of"]

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


async def read_body(request: web.Request) -> bytes:
    """The raw body of a JSON request: content type and size checked."""
    ctype = request.content_type
    if ctype not in _JSON_TYPES and not ctype.endswith("+json"):
        raise InputError([f"Content-Type must be application/json (got {ctype or 'none'})"], 415)
    if (request.content_length or 0) > MAX_BODY:
        raise TooLarge([f"body is larger than {MAX_BODY} bytes"])
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge([f"body is larger than {MAX_BODY} bytes"]) from None


async def read_json(request: web.Request, auth: Auth, source: str) -> Any:
    """Auth, content type, size, JSON: an InputError (4xx) naming the problem."""
    if not auth.allows(source, request.headers.get("Authorization")):
        raise Unauthorized([f"missing or wrong credentials for {source} (Authorization header)"])
    raw = await read_body(request)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise NotJSON() from None


def _pagerduty_body(e: InputError) -> dict[str, Any]:
    """PagerDuty's own answer bodies for a refused event (FACTS.md)."""
    if isinstance(e, NotJSON):
        return {"status": "Unrecognized object", "message": "Event object format is unrecognized",
                "errors": ["JSON parse error"]}
    return {"status": "invalid event", "message": "Event object is invalid", "errors": e.errors}


def error_middleware(metrics: Metrics) -> Any:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except InputError as e:
            metrics.requests_rejected.labels(source_of(request), str(e.status)).inc()
            if request.path.startswith("/v2/"):
                return json_response(_pagerduty_body(e), e.status)
            resp = json_response({"status": "error", "message": e.errors[0], "errors": e.errors},
                                 e.status)
            if isinstance(e, Unauthorized) and e.challenge:
                resp.headers["WWW-Authenticate"] = e.challenge
            return resp
        except StoreError as e:
            metrics.requests_rejected.labels(source_of(request), "503").inc()
            log.warning("store unavailable; asking the sender to retry",
                        extra={"fields": {"path": request.path, "error": str(e)}})
            return json_response({"status": "error", "message": "store unavailable, retry later",
                                  "errors": [str(e)]}, 503)
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


def admin_middleware(auth: Auth) -> Any:
    """The one guard of every admin route (routes whose handler says `source = "admin"`)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if source_of(request) == ADMIN:
            if auth.configured(ADMIN):
                if not auth.allows(ADMIN, request.headers.get("Authorization")):
                    challenge = 'Basic realm="alert-proxy", charset="UTF-8"' if auth.is_basic(ADMIN) else None
                    raise Unauthorized(["missing or wrong credentials for admin"], challenge)
            elif not _loopback(request):
                raise InputError(["admin paths answer loopback clients only; give credentials "
                                  "with --auth admin=... to open them"], 403)
        return await handler(request)

    return guard
