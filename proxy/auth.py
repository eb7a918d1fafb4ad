"""Optional inbound auth per source: a bearer token or basic auth, compared in constant time.

A spec reads `SOURCE=bearer:TOKEN` or `SOURCE=basic:USER:PASSWORD`; SOURCE is one of
alertmanager, datadog, events (the /v2 paths), admin (reload and the status API), or `*`.
`${VAR}` in a spec is read from the environment, so secrets stay off the command line."""

from __future__ import annotations

import base64
import hmac
import os
import re

from proxy.errors import ConfigError

__all__ = ["SOURCES", "Auth", "parse_auth"]

SOURCES = ("alertmanager", "datadog", "events", "admin", "*")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Auth:
    def __init__(self, expected: dict[str, str]) -> None:
        self._expected = expected  # source -> full Authorization header value

    def configured(self, source: str) -> bool:
        """Credentials are required for `source` (its own, or `*`)."""
        return source in self._expected or "*" in self._expected

    def allows(self, source: str, header: str | None) -> bool:
        want = self._expected.get(source) or self._expected.get("*")
        if want is None:
            return True
        return header is not None and hmac.compare_digest(header.encode(), want.encode())


def parse_auth(specs: list[str]) -> Auth:
    expected: dict[str, str] = {}
    for spec in specs:
        source, _, rest = spec.partition("=")
        kind, _, secret = rest.partition(":")
        if source not in SOURCES or kind not in ("bearer", "basic") or not secret:
            raise ConfigError([f"--auth: expected SOURCE=bearer:TOKEN or SOURCE=basic:USER:PASS "
                               f"with SOURCE in {', '.join(SOURCES)} (got {source!r}={kind!r}:…)"])
        try:
            secret = _ENV.sub(lambda m: os.environ[m.group(1)], secret)
        except KeyError as e:
            raise ConfigError([f"--auth {source}: environment variable {e.args[0]} is not set"]) from None
        if kind == "bearer":
            expected[source] = f"Bearer {secret}"
        else:
            expected[source] = "Basic " + base64.b64encode(secret.encode()).decode()
    return Auth(expected)
