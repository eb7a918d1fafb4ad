"""The rules in force: loaded at start, reloaded on request (SIGHUP, POST /-/reload) or
when a rule file changes. A reload that fails validation keeps the old rules."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

from proxy.errors import ConfigError
from proxy.rules.engine import RuleSet
from proxy.rules.schema import load_rules, rule_files

__all__ = ["LiveRules"]

log = logging.getLogger("alert_proxy")


class LiveRules:
    def __init__(self, locations: list[str]) -> None:
        self.locations = locations
        self.current = RuleSet(load_rules(locations))
        self.loaded_at = time.time()
        self.last_errors: list[str] = []
        self.last_attempt_at = self.loaded_at
        self._mtimes = self._stat()

    def _stat(self) -> dict[str, float]:
        out = {}
        for p in [*rule_files(self.locations), *map(Path, self.locations)]:
            with contextlib.suppress(OSError):
                out[str(p)] = p.stat().st_mtime
        return out

    def changed(self) -> bool:
        """A rule file (or a folder of them) changed since the last (re)load."""
        return self._stat() != self._mtimes

    def files(self) -> list[Path]:
        return rule_files(self.locations)

    def reload(self) -> list[str]:
        """Load the rules again; on error keep the old ones. Returns the errors."""
        self._mtimes = self._stat()
        self.last_attempt_at = time.time()
        try:
            self.current = RuleSet(load_rules(self.locations))
        except ConfigError as e:  # (load_rules turns any failure into one)
            self.last_errors = e.errors
            log.error("rules reload failed; keeping the previous rules",
                      extra={"fields": {"errors": e.errors}})
            return e.errors
        self.last_errors = []
        self.loaded_at = self.last_attempt_at
        log.info("rules reloaded", extra={"fields": {"rules": len(self.current.rules)}})
        return []
