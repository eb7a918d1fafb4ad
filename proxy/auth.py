"""Optional inbound auth per source: a bearer token or basic auth, compared in constant time.

A spec reads `SOURCE=bearer:TOKEN` or `SOURCE=basic:USER:PASSWORD`; SOURCE is one of
alertmanager, datadog, events (the /v2 paths), admin (reload and the status API), webhook
(every /v1/webhook/NAME) or webhook:NAME (that source only), or `*`.
`${VAR}` in a spec is read from the environment, so secrets stay off the command line."""

from __future__ import annotations

import base64
import hmac
import os
import re

from proxy.errors import ConfigError

__all__ = ["SOURCES", "Auth", "expand_env", "parse_auth"]

SOURCES = ("alertmanager", "datadog", "events", "admin", "webhook", "*")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Auth:
    def __init__(self, expected: dict[str, str]) -> None:
        self._expected = expected  # source -> full Authorization header value

    def _wanted(self, source: str) -> str | None:
        """The credentials of `source`: its own, its family's (webhook:NAME -> webhook), `*`."""
        family = source.partition(":")[0]
        return self._expected.get(source) or self._expected.get(family) or self._expected.get("*")

    def header(self, source: str) -> str | None:
        """The Authorization header `source` must send (a client of our own, e.g. `sync`)."""
        return self._wanted(source)

    def configured(self, source: str) -> bool:
        """Credentials are required for `source`."""
        return self._wanted(source) is not None

    def is_basic(self, source: str) -> bool:
        return (self._wanted(source) or "").startswith("Basic ")

    def allows(self, source: str, header: str | None) -> bool:
        want = self._wanted(source)
        if want is None:
            return True
        return header is not None and hmac.compare_digest(header.encode(), want.encode())


def expand_env(text: str, what: str) -> str:
    """`${VAR}` in a secret given on the command line, read from the environment."""
    try:
        return _ENV.sub(lambda m: os.environ[m.group(1)], text)
    except KeyError as e:
        raise ConfigError([f"{what}: environment variable {e.args[0]} is not set"]) from None


def parse_auth(specs: list[str]) -> Auth:
    expected: dict[str, str] = {}
    for spec in specs:
        source, _, rest = spec.partition("=")
        kind, _, secret = rest.partition(":")
        known = source in SOURCES or re.fullmatch(r"webhook:[a-z0-9][a-z0-9_-]*", source)
        if not known or kind not in ("bearer", "basic") or not secret:
            raise ConfigError([f"--auth: expected SOURCE=bearer:TOKEN or SOURCE=basic:USER:PASS "
                               f"with SOURCE in {', '.join(SOURCES)}, webhook:NAME (got {source!r}={kind!r}:…)"])
        secret = expand_env(secret, f"--auth {source}")
        if kind == "bearer":
            expected[source] = f"Bearer {secret}"
        else:
            expected[source] = "Basic " + base64.b64encode(secret.encode()).decode()
    return Auth(expected)
