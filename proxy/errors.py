"""The proxy's errors, and how the HTTP layer answers each.

    ProxyError
     ├── InputError          a request the proxy refuses: 4xx, every problem names its field
     │    ├── NotJSON        the body does not decode (PagerDuty: "Unrecognized object")
     │    ├── Unauthorized   missing or wrong credentials or signature (401)
     │    ├── TooLarge       the body is over the limit (413)
     │    └── Upstream       a service the request needs did not answer (503: retry)
     ├── ConfigError         a rules file that does not validate (file:line: message): exit 1
     │    └── UsageError     a flag or environment value that cannot work, however long one
     │                       waits (an upstream without a scheme, a store file that cannot be
     │                       opened): exit 2, one line naming it
     └── StoreError          the store cannot be reached or answered wrongly (503: retry)
          └── StoreFull      it holds --max-groups open groups: a new one waits (503: retry)
"""

from __future__ import annotations

__all__ = ["ConfigError", "InputError", "NotJSON", "ProxyError", "StoreError", "StoreFull",
           "TooLarge", "Unauthorized", "Upstream", "UsageError"]


class ProxyError(Exception):
    """Base of every error the proxy raises on purpose."""


class InputError(ProxyError):
    """A request was refused. `errors` lists every problem, each naming its field."""

    status = 400

    def __init__(self, errors: list[str], status: int | None = None) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        if status is not None:
            self.status = status


class NotJSON(InputError):
    """The body is not a JSON document (or not the object the path expects)."""

    def __init__(self, detail: str = "body is not valid JSON") -> None:
        super().__init__([detail])


class Unauthorized(InputError):
    status = 401

    def __init__(self, errors: list[str], challenge: str | None = None) -> None:
        super().__init__(errors)
        self.challenge = challenge  # a WWW-Authenticate value (basic auth: a browser asks)


class TooLarge(InputError):
    status = 413


class Upstream(InputError):
    """Taking the request needs another service (an SNS signing certificate, say) that did
    not answer: nothing was taken, the sender retries."""

    status = 503


class ConfigError(ProxyError):
    """Configuration that does not validate. `errors` are lines `file:line: message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class UsageError(ConfigError):
    """A flag or an environment value that cannot work: the command exits 2."""


class StoreError(ProxyError):
    """The store failed; the driver's error is chained as __cause__."""


class StoreFull(StoreError):
    """The store holds the most open groups it may (--max-groups): alerts of open groups
    are still taken; one that would open a group is refused until some close."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the proxy holds {limit} open groups, its --max-groups: an alert that "
                         "opens another is refused until some resolve (alerts of open groups are "
                         "still taken)")
