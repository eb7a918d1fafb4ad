"""The proxy's errors.

    ProxyError
     ├── InputError          a request body the proxy refuses (answered 4xx, names the field)
     ├── ConfigError         a rules file or a flag that does not validate (file:line: message)
     └── StoreError          the store cannot be reached or answered wrongly (answered 503)
"""

from __future__ import annotations

__all__ = ["ConfigError", "InputError", "ProxyError", "StoreError"]


class ProxyError(Exception):
    """Base of every error the proxy raises on purpose."""


class InputError(ProxyError):
    """A request body was refused. `errors` lists every problem, each naming its field."""

    def __init__(self, errors: list[str], status: int = 400) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors
        self.status = status


class ConfigError(ProxyError):
    """Configuration that does not validate. `errors` are lines `file:line: message`."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class StoreError(ProxyError):
    """The store (memory or Redis) failed; the driver's error is chained as __cause__."""
