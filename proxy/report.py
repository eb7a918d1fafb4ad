"""`alert-proxy report`: the noise figures as a table a person reads (or as JSON).

It reads the store (sqlite://, redis://: the counters every replica writes), or a running
proxy's /api/v1/stats when the state lives in that process's memory (memory://)."""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import orjson

from proxy.errors import ConfigError
from proxy.jsontypes import JsonObject
from proxy.stats import parse_since, summarize

__all__ = ["format_report", "from_api", "from_store"]


async def _read(url: str, prefix: str, since_s: float) -> JsonObject:
    from proxy.store import from_url

    store = from_url(url, prefix=prefix)
    try:
        now = time.time()
        until, first = int(now // 3600), int((now - since_s) // 3600) + 1
        return summarize(await store.counts(first), first, until)
    finally:
        await store.close()


def from_store(url: str, prefix: str, since: str) -> JsonObject:
    try:
        seconds = parse_since(since)
    except ValueError as e:
        raise ConfigError([f"--since: {e}"]) from None
    if url.startswith("memory://"):
        raise ConfigError(["--store memory:// lives inside the proxy's process: give its address "
                           "with --url http://127.0.0.1:8080"])
    return asyncio.run(_read(url, prefix, seconds))


def from_api(base: str, since: str, token: str | None) -> JsonObject:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"{base.rstrip('/')}/api/v1/stats?since={since}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            data: JsonObject = orjson.loads(resp.read())
            return data
    except urllib.error.HTTPError as e:
        raise ConfigError([f"--url {base}: HTTP {e.code}: {e.read()[:300].decode(errors='replace')}"]) from None
    except (urllib.error.URLError, OSError) as e:
        raise ConfigError([f"--url {base}: cannot reach the proxy: {e}"]) from None


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def _secs(v: float | None) -> str:
    if v is None:
        return "-"
    if v < 120:
        return f"{v:.0f} s"
    if v < 7200:
        return f"{v / 60:.0f} min"
    return f"{v / 3600:.1f} h"


def _table(rows: list[JsonObject], name: str, limit: int = 15) -> list[str]:
    if not rows:
        return ["  (none)"]
    width = max(len(name), *(len(str(r[name])) for r in rows[:limit]))
    out = [f"  {name:<{width}}  {'alerts in':>10}  {'pages':>6}  {'incidents':>9}  {'ratio':>8}  "
           f"{'MTTA':>8}  {'MTTR':>8}"]
    out += [f"  {r[name]!s:<{width}}  {r['in']:>10,}  {r['pages']:>6,}  {r['incidents']:>9,}  "
            f"{r['ratio']:>8}  {_secs(r['mtta_s']):>8}  {_secs(r['mttr_s']):>8}" for r in rows[:limit]]
    if len(rows) > limit:
        out.append(f"  ... and {len(rows) - limit} more")
    return out


def format_report(s: JsonObject) -> str:
    lines = [f"alert-proxy noise report, {_when(s['since'])} to {_when(s['until'])} UTC", "",
             f"deliveries     {s['alerts_in']:>10,}   " + ", ".join(
                 f"{k} {v:,}" for k, v in s["by_source"].items()),
             f"pages out      {s['pages_out']:>10,}   " + ", ".join(
                 f"{k} {v:,}" for k, v in s["pages_by_why"].items()),
             f"incidents      {s['incidents_opened']:>10,}   opened; {s['repeat_triggers']:,} "
             "repeat or update triggers",
             f"alerts fired   {s['alerts_fired']:>10,}   started firing (new, or again after a "
             f"resolve); {s['alerts_resolved']:,} resolved",
             f"noise ratio    {s['noise_ratio']:>10}   (alerts fired : pages out)",
             "suppressed     " + (", ".join(f"{k} {v:,}" for k, v in s["suppressed"].items() if v)
                                  or "nothing"),
             f"time to page {_secs(s['time_to_page']['mean_s'])}, to acknowledge "
             f"{_secs(s['time_to_acknowledge']['mean_s'])} ({s['time_to_acknowledge']['n']}), to resolve "
             f"{_secs(s['time_to_resolve']['mean_s'])} ({s['time_to_resolve']['n']}) (means)",
             "", "by rule", *_table(s["by_rule"], "rule"),
             "", "by service", *_table(s["by_service"], "service"),
             "", "noisiest alertnames"]
    lines += [f"  {r['alertname']:<40}  {r['in']:>10,}" for r in s["top_alertnames"]] or ["  (none)"]
    lines += ["", "PagerDuty, per routing key"]
    lines += [f"  {k['key']:<30}  sent {k['sent']:>7,}  429s {k['429s']:>5,}" for k in s["keys"]] \
        or ["  (nothing sent)"]
    return "\n".join(lines)
