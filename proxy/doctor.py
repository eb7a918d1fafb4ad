"""`alert-proxy doctor`: the links serve would use, checked with the same flags and
environment, one line each (`ok`, `FAIL`, or `--` for what is off by choice); exit 1 when
any failed. Nothing is sent that changes anything: the upstream gets a GET (no event), the
REST API a `GET /abilities`, the store a ping."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from proxy.errors import ConfigError, StoreError
from proxy.pdrest import APIError, PagerDutyAPI

__all__ = ["Doctor"]


@dataclass
class Doctor:
    rules: list[str]
    upstream: str
    store_url: str
    store_prefix: str
    token: str = ""
    from_email: str = ""
    api_url: str = ""
    webhook_secrets: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    failed: int = 0

    def ok(self, what: str, text: str) -> None:
        self.lines.append(f"ok    {what}: {text}")

    def fail(self, what: str, text: str) -> None:
        self.failed += 1
        self.lines.append(f"FAIL  {what}: {text}")

    def off(self, what: str, text: str) -> None:
        self.lines.append(f"--    {what}: {text}")

    async def run(self) -> int:
        rf = self._rules()
        await self._store()
        await self._upstream()
        await self._rest(rf)
        actions = rf.actions if rf is not None else []
        if self.webhook_secrets:
            self.ok("PagerDuty webhooks", f"{len(self.webhook_secrets)} signing secret(s) set: "
                    "/v1/pagerduty hears incident events")
        elif actions:
            self.fail("PagerDuty webhooks", f"{len(actions)} action(s) wait for incident events, but "
                      "no --pagerduty-webhook-secret is set: /v1/pagerduty refuses every delivery")
        else:
            self.off("PagerDuty webhooks", "no --pagerduty-webhook-secret: /v1/pagerduty is "
                     "closed" + ("; the REST sync corrects states instead" if self.token else
                                 ", and acks and resolves made in PagerDuty are not heard"))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for a in actions:
                await self._target(session, a)
        return 1 if self.failed else 0

    async def _target(self, session: aiohttp.ClientSession, a: Any) -> None:
        """An action's target answers, with its credentials where it has a read-only call;
        nothing is posted."""
        s, what = a.spec, f"action {a.name}"
        if a.kind == "jira":
            url, headers = f"{s['site']}/rest/api/{s['api']}/myself", {"Authorization": "Basic " + base64.b64encode(
                f"{s['email']}:{s['token']}".encode()).decode()}
        elif a.kind == "statuspage":
            url, headers = f"{s['url']}/pages/{s['page']}", {"Authorization": f"OAuth {s['api_key']}"}
        elif a.kind == "slack":
            url, headers = s["url"], {}
        else:
            url, headers = "/".join(a.call.url.source.split("/")[:3]), {}
        shown = "/".join(url.split("/")[:3])  # (a Slack hook's path is its secret)
        try:
            async with session.get(url, headers=headers) as resp:
                status, text = resp.status, (await resp.text(errors="replace"))[:80].strip()
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
            self.fail(what, f"{a.kind} at {shown}: not reachable ({type(e).__name__})")
            return
        refused = {"jira": (401, 403), "statuspage": (401, 403, 404), "slack": (403, 404, 410)}.get(a.kind, ())
        if status in refused:
            self.fail(what, f"{a.kind} at {shown} answers {status} {text or ''}".rstrip()
                      + {"jira": ": check jira.email and jira.token",
                         "statuspage": ": check statuspage.api_key and page"}.get(a.kind, ""))
        else:
            self.ok(what, f"{a.kind} at {shown} answers (HTTP {status}; nothing posted)")

    def _rules(self) -> Any:
        from proxy.rules import RuleSet, load_rules

        try:
            rf = load_rules(self.rules)
        except ConfigError as e:
            for line in e.errors:
                self.fail("rules", line)
            return None
        rules = [r for _, r in RuleSet(rf).walk()]
        self.ok("rules", f"{len(rules)} rules load from {', '.join(self.rules)}")
        names = {r.key_name for r in (rf.defaults, *rules) if r.routing_key}
        names |= {h.key_name for h in rf.heartbeats}
        if names:  # (load_rules refuses a key that is not 32 alphanumeric characters)
            self.ok("routing keys", f"{len(names)} well formed: {', '.join(sorted(names))}")
        else:
            self.off("routing keys", "none in the rules: only alerts that carry their own are sent")
        return rf

    async def _store(self) -> None:
        from proxy.store import from_url

        shown = self.store_url.split("@")[-1].split("?")[0]
        if self.store_url.startswith("memory://"):
            self.off("store", "memory://: groups and the queue live in the process (lost at a restart)")
            return
        if self.store_url.startswith("sqlite://"):
            self._sqlite(shown)  # (not opened as the store: that makes a second writer)
            return
        try:
            store = from_url(self.store_url, prefix=self.store_prefix)
        except ConfigError as e:
            self.fail("store", "; ".join(e.errors))
            return
        try:
            await asyncio.wait_for(store.ping(), timeout=5)
            self.ok("store", f"{shown} answers")
        except (StoreError, OSError, TimeoutError) as e:
            self.fail("store", f"{shown}: {e or 'no answer in 5 s'}")
        finally:
            await store.close()

    def _sqlite(self, shown: str) -> None:
        from proxy.store.sqlite.schema import file_of

        path = file_of(self.store_url)
        if path.is_file():
            try:
                with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
                    conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as e:
                self.fail("store", f"{shown}: cannot be read: {e}")
                return
            self.ok("store", f"{shown} reads")
            return
        folder = next(p for p in (path.parent, *path.parent.parents) if p.exists())
        if os.access(folder, os.W_OK | os.X_OK):
            self.ok("store", f"{shown} does not exist yet: serve makes it")
        else:
            self.fail("store", f"{shown} does not exist and {folder} is not writable")

    async def _upstream(self) -> None:
        t0 = time.monotonic()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s, \
                    s.get(self.upstream.rstrip("/") + "/v2/enqueue") as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            self.fail("upstream", f"{self.upstream}: not reachable ({type(e).__name__}: {e or 'timeout'})")
            return
        self.ok("upstream", f"{self.upstream} reachable (HTTP {status} to a GET, in "
                f"{time.monotonic() - t0:.2f} s; no event sent)")

    async def _rest(self, rf: Any) -> None:
        from proxy.notes import wants_notes

        notes = rf is not None and wants_notes(rf)
        if not self.token:
            if notes:
                self.fail("PagerDuty REST API", "the rules write incident notes (notes:, or a "
                          "remediation's outcome) but no --pagerduty-api-token is set")
            else:
                self.off("PagerDuty REST API", "no --pagerduty-api-token: no sync of incident "
                         "states, no incident notes")
            return
        api = PagerDutyAPI(self.token, self.from_email, self.api_url, tries=1, timeout=5)
        try:
            abilities = await api.abilities()
        except APIError as e:
            what = {401: "the token is refused (401: wrong, revoked, or not a REST API key)",
                    403: "the token may not read the account (403)"}.get(e.status, str(e))
            self.fail("PagerDuty REST API", f"{self.api_url}: {what}")
            return
        finally:
            await api.close()
        self.ok("PagerDuty REST API", f"{self.api_url}: the token is valid ({len(abilities)} "
                "abilities)")
        if notes and not self.from_email:
            self.fail("PagerDuty REST API", "notes are written as a user: set --pagerduty-from "
                      "to a PagerDuty user's email")
