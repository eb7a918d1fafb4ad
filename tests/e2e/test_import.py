"""`alert-proxy import` against the real Alertmanager: for Alertmanager's own example
configurations, the fixtures' configuration and one of ours (continue under a route
with children, matchers sets, group_by [...], time intervals), the same alerts are sent
to Alertmanager (/api/v2/alerts, groups read back from /api/v2/alerts/groups) and to the
proxy running the imported rules (groups read from /api/v1/groups): every group holds
the same alerts."""

from __future__ import annotations

import asyncio
import itertools
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from tests.conftest import FIXTURES, ROOT, wait_for
from tests.support.alertmanager import alertmanager
from tests.support.net import free_port, wait_port

pytestmark = pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None,
                                reason="needs prometheus-alertmanager (tests/run.sh installs it)")

EXAMPLES = ROOT / "tests" / "fixtures" / "alertmanager-examples"
CONFIGS = [EXAMPLES / "simple.yml", EXAMPLES / "alertmanager.yml", EXAMPLES / "continue-and-time.yml",
           FIXTURES / "alertmanager.yml"]
UNROUTED = "test-unrouted"
LITERAL_KEYS = ("0123456789abcdef0123456789abcdef", "dbdbdbdbdbdbdbdbdbdbdbdbdbdbdbdb", "<team-X-key>")


def alert_set() -> list[dict[str, str]]:
    """Every combination of the labels these configurations route and group on."""
    out = []
    for name, service, severity, owner, cluster, extra in itertools.product(
            ("HighLatency", "DiskFull", "ClusterDown"), ("foo1", "baz", "files", "database", "web", "other"),
            ("critical", "warning"), ("team-X", "team-Y", ""), ("c1", "c2"),
            ({"team": "db", "env": "prod", "instance": "db-9:9100"}, {"team": "db", "env": "prod"},
             {"database": "orders", "env": "dev"}, {})):
        labels = {"alertname": name, "service": service, "severity": severity, "cluster": cluster, **extra}
        if owner:
            labels["owner"] = owner
        out.append(labels)
    return out


def for_alertmanager(path: Path) -> str:
    """The same route tree, inhibit rules and time intervals, with receivers reduced to
    their names: what Alertmanager 0.25 loads of the older examples (see README.md). A root
    route without a receiver (simple.yml) gets the first: groups do not depend on it."""
    doc = yaml.safe_load(path.read_text())
    keep = {k: doc[k] for k in ("route", "inhibit_rules", "time_intervals", "mute_time_intervals") if k in doc}
    keep["receivers"] = [{"name": r["name"]} for r in doc["receivers"]] + [{"name": UNROUTED}]
    keep["route"].setdefault("receiver", UNROUTED)  # simple.yml has none,
    keep["route"].pop("continue", None)  # and a continue Alertmanager refuses at the root
    keep["route"].pop("active_time_intervals", None)
    return yaml.safe_dump(keep)


def run_import(config: Path) -> subprocess.CompletedProcess[str]:
    """`alert-proxy import CONFIG`, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "proxy", "import", str(config)], capture_output=True,
                          text=True, cwd=ROOT, timeout=60, check=False)


def key(labels: dict[str, str]) -> str:
    return orjson.dumps(labels, option=orjson.OPT_SORT_KEYS).decode()


def partition(groups: list[list[dict[str, str]]]) -> list[list[str]]:
    return sorted(sorted(key(a) for a in g) for g in groups)


async def alertmanager_groups(tmp_path: Path, config: str, alerts: list[dict[str, str]]) -> list[list[str]]:
    async with alertmanager(tmp_path, config) as am:
        now = datetime.now(UTC)
        body = [{"labels": a, "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat()}
                for a in alerts]
        async with aiohttp.ClientSession() as s:
            async with s.post(f"{am}/api/v2/alerts", json=body) as r:
                assert r.status == 200, await r.text()
            seen: list[Any] = []

            async def settled() -> bool:
                async with s.get(f"{am}/api/v2/alerts/groups") as r:
                    groups = await r.json()
                placed = {key(a["labels"]) for g in groups for a in g["alerts"]}
                seen.append(partition([[a["labels"] for a in g["alerts"]] for g in groups
                                       if g["receiver"]["name"] != UNROUTED]))
                return len(placed) == len(alerts) and len(seen) > 1 and seen[-1] == seen[-2]

            for _ in range(100):
                if await settled():
                    break
                await asyncio.sleep(0.2)
            else:
                raise AssertionError("Alertmanager did not group every alert")
        return seen[-1]


async def proxy_groups(tmp_path: Path, rules: str, alerts: list[dict[str, str]], fake_pd,
                       proxy_process) -> list[list[str]]:
    (tmp_path / "rules").mkdir(parents=True)
    (tmp_path / "rules" / "imported.yml").write_text(rules)
    names = sorted(set(re.findall(r"\$\{(PD_KEY_[A-Z0-9_]+)", rules)))
    env = {n: f"{i:02d}".ljust(32, "k") for i, n in enumerate(names)}  # a key for every receiver
    port = free_port()
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(tmp_path / "rules"), "--upstream",
                  fake_pd.url, "--dry-run", env=env)
    await asyncio.to_thread(wait_port, port)
    body = {"version": "4", "alerts": [{"status": "firing", "labels": a} for a in alerts]}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{port}/v1/alertmanager", json=body) as r:
            assert r.status == 200, await r.text()
        async with s.get(f"http://127.0.0.1:{port}/api/v1/groups") as r:
            groups = (await r.json())["groups"]
    return partition([[a["labels"] for a in g["alerts"]] for g in groups])


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
async def test_imported_rules_group_as_alertmanager_does(tmp_path, config, fake_pd, proxy_process):
    out = await asyncio.to_thread(run_import, config)
    assert out.returncode == 0, out.stderr
    assert not any(k in out.stdout or k in out.stderr for k in LITERAL_KEYS)  # keys: ${VAR} only
    alerts = alert_set()
    expected = await alertmanager_groups(tmp_path / "am", for_alertmanager(config), alerts)
    got = await proxy_groups(tmp_path / "proxy", out.stdout, alerts, fake_pd, proxy_process)
    assert len(expected) >= 3 and got == expected, (len(expected), len(got))


def test_what_cannot_be_expressed_is_listed(tmp_path):
    out = run_import(EXAMPLES / "continue-and-time.yml")
    notes = [line.removeprefix("alert-proxy import: not imported: ") for line in out.stderr.splitlines()]
    assert "receiver 'storage': slack_configs (the proxy pages PagerDuty only)" in notes
    assert "route.routes[1]: active_time_intervals (routes active only in a time interval: the rule " \
           "pages at all times)" in notes
    assert all(f"#   - {n}" in out.stdout for n in notes)  # and as comments in the rules
    assert "routing_key: ${PD_KEY_DB_CRITICAL}" in out.stdout and "routing_key: ${PD_KEY_STORAGE:-}" in out.stdout
    bad = tmp_path / "bad.yml"
    bad.write_text("route: {receiver: x, routes: [{matchers: ['a=~\"(\"']}]}\nreceivers: [{name: x}]\n")
    out = run_import(bad)
    assert out.returncode == 1 and "route.routes[0]: '(' is not a valid regular expression" in out.stderr


async def test_imported_maintenance_mutes_only_its_routes(tmp_path, fake_pd, proxy_process):
    """The nights window of the imported config mutes db-nights and web only: at any hour
    one of its two entries or neither is active, and a route without it still pages."""
    out = await asyncio.to_thread(run_import, EXAMPLES / "continue-and-time.yml")
    rules = out.stdout.replace("group_wait: 10s", "group_wait: 200ms")
    (tmp_path / "rules").mkdir(parents=True)
    (tmp_path / "rules" / "imported.yml").write_text(rules)
    env = {n: n[-8:].ljust(32, "x").replace("_", "y") for n in set(re.findall(r"\$\{(PD_KEY_[A-Z0-9_]+)", rules))}
    port = free_port()
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(tmp_path / "rules"), "--upstream",
                  fake_pd.url, env=env)
    await asyncio.to_thread(wait_port, port)
    alerts = [{"alertname": "Any", "service": "web"}, {"alertname": "Other", "service": "shop"}]
    body = {"version": "4", "alerts": [{"status": "firing", "labels": a} for a in alerts]}
    async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{port}/v1/alertmanager", json=body) as r:
        assert r.status == 200
    await wait_for(lambda: any("Other" in str(x.body) for x in fake_pd.accepted()), timeout=10)
    berlin = datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo("Europe/Berlin"))
    weekend = berlin.weekday() >= 5
    night = berlin.hour >= 22 or berlin.hour < 6
    await asyncio.sleep(1)
    web_paged = any("Any" in str(x.body) for x in fake_pd.accepted())
    assert web_paged is not (weekend or night)
