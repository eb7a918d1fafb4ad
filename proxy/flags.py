"""The command line's flag types: every flag of `serve` also reads ALERT_PROXY_<FLAG> from
the environment, and a bad value names both; a usage error is one line, exit 2."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any, NoReturn
from urllib.parse import urlsplit

from proxy.errors import UsageError


def env(flag: str, default: str | None = None) -> str | None:
    return os.environ.get("ALERT_PROXY_" + flag.upper().replace("-", "_"), default)


def checked(kind: str, convert: Callable[[str], Any], flag: str) -> Callable[[str], Any]:
    """An argparse type whose error names the flag and its environment variable."""

    def check(text: str) -> Any:
        try:
            return convert(text)
        except (ValueError, TypeError):
            var = "ALERT_PROXY_" + flag.upper().replace("-", "_")
            raise argparse.ArgumentTypeError(f"{text!r} is not {kind} (from --{flag} or {var})") from None

    return check


def env_bool(flag: str) -> bool:
    """A yes/no environment variable: 1/true/yes/on or 0/false/no/off (or unset); anything
    else is an error naming it."""
    var = "ALERT_PROXY_" + flag.upper().replace("-", "_")
    raw = os.environ.get(var, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise UsageError([f"{var}={os.environ[var]!r} is not a yes/no value (1, true, yes, on or "
                      "0, false, no, off)"])


def base_url(text: str) -> str:
    """An http(s) base URL with a host (PagerDuty's, or a fake's)."""
    u = urlsplit(text)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError(text)
    return text


def email(text: str) -> str:
    """A user's email (PagerDuty answers 400, code 1028, to a From header that is not one)."""
    name, at, host = text.strip().partition("@")
    if not (name and at and "." in host) or any(c.isspace() for c in text.strip()):
        raise ValueError(text)
    return text.strip()


def hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(text)
    return host.strip("[]"), int(port)


def positive(convert: Callable[[str], Any], least: float = 0) -> Callable[[str], Any]:
    def check(text: str) -> Any:
        v = convert(text)
        if v <= least:
            raise ValueError(text)
        return v

    return check


def log_level(text: str) -> str:
    if text.lower() not in ("debug", "info", "warning", "error"):
        raise ValueError(text)
    return text


class Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each default."""


def option(p: argparse.ArgumentParser, flag: str, default: str | None, help: str,
            kind: str = "", convert: Callable[[str], Any] | None = None, **kw: Any) -> None:
    """--flag, defaulting to ALERT_PROXY_<FLAG> (then `default`), converted by `convert`."""
    var = "ALERT_PROXY_" + flag.upper().replace("-", "_")
    if convert is not None:
        kw["type"] = checked(kind, convert, flag)
    p.add_argument(f"--{flag}", default=env(flag, default), help=f"{help} ({var})", **kw)


class Parser(argparse.ArgumentParser):
    """A usage error is one line naming the flag (and --help for the rest), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")

