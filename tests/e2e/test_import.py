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


PAGES_CONFIG = """
route:
  receiver: default
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1m
  repeat_interval: 1h
  routes:
    - matchers: ['team="db"']
      receiver: db
      group_by: [alertname, cluster]
    - matchers: ['team="web"']
      receiver: web
receivers:
  - name: default
    pagerduty_configs: [{routing_key: %(k1)s, url: %(url)s/v2/enqueue}]
  - name: db
    pagerduty_configs:
      - routing_key: %(k2)s
        url: %(url)s/v2/enqueue
        severity: '{{ if .CommonLabels.severity }}{{ .CommonLabels.severity | toLower }}{{ else }}critical{{ end }}'
        description: '{{ .CommonLabels.alertname }} on {{ .CommonLabels.cluster }}: {{ .CommonAnnotations.summary }}'
        details: {runbook: '{{ .CommonAnnotations.runbook }}', count: '{{ .Alerts.Firing | len }}',
                  name: '{{ .CommonLabels.alertname }}'}
        component: '{{ .CommonLabels.cluster }}'
        group: databases
  - name: web
    pagerduty_configs:
      - routing_key: %(k3)s
        url: %(url)s/v2/enqueue
        severity: warning
        client: web-alerts
        links: [{href: 'https://runbooks.example.com/{{ .CommonLabels.alertname }}', text: runbook}]
"""
PAGES_ALERTS = [
    {"alertname": "HighLatency", "service": "checkout", "instance": "i1", "severity": "critical"},
    {"alertname": "HighLatency", "service": "checkout", "instance": "i2", "severity": "critical"},
    {"alertname": "HighLatency", "service": "cart", "instance": "i3", "severity": "warning"},
    {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
    {"alertname": "Replication", "team": "db", "cluster": "c1", "severity": "WARNING"},
    {"alertname": "Replication", "team": "db", "cluster": "c2"},
    {"alertname": "Connections", "team": "db", "cluster": "c1", "severity": "info"},
    {"alertname": "Errors", "team": "web", "severity": "critical"},
    {"alertname": "Slow", "team": "web", "instance": "w1"},
]


def _page_id(body: dict[str, Any]) -> tuple[str, str]:
    """(routing key, the group's alertname and cluster), from either sender's page."""
    d = body["payload"]["custom_details"]
    if "alerts" in d:  # the proxy's
        labels = d["alerts"][0]["labels"]
    elif "name" in d:  # Alertmanager's, with the db receiver's details
        labels = {"alertname": d["name"], "cluster": body["payload"].get("component", "")}
    else:  # Alertmanager's default details: "Labels:\n - alertname = X\n ..."
        labels = dict(re.findall(r"- (\w+) = (.*)", d["firing"]))
    return body["routing_key"], f"{labels['alertname']}/{labels.get('cluster', '')}"


async def test_imported_pages_read_like_alertmanagers(tmp_path, proxy_process):
    """The same alerts through the real Alertmanager (pagerduty_configs) and through the
    proxy with the imported rules: every page has the same severity and summary (4 of 7
    differed: Alertmanager's default severity `error` or the receiver's template against
    the alert's label; its `[FIRING:1] A c3 (i1 critical)` against a bare alertname), and
    the receivers' component, group, client, links and details are carried across."""
    from tests.support.fakepd import FakePagerDuty

    keys = {"k1": "1" * 32, "k2": "2" * 32, "k3": "3" * 32}
    am_pd, proxy_pd = FakePagerDuty(), FakePagerDuty()
    await am_pd.start()
    await proxy_pd.start()
    try:
        config = PAGES_CONFIG % {**keys, "url": am_pd.url}
        (tmp_path / "am.yml").write_text(config)
        out = await asyncio.to_thread(run_import, tmp_path / "am.yml")
        assert out.returncode == 0, out.stderr
        assert not [n for n in out.stderr.splitlines() if "cannot be translated" in n], out.stderr
        async with alertmanager(tmp_path / "am", config) as am:
            now = datetime.now(UTC)
            body = [{"labels": a, "annotations": {"summary": f"{a['alertname']} is bad", "runbook": "rb"},
                     "startsAt": now.isoformat(), "endsAt": (now + timedelta(hours=1)).isoformat()}
                    for a in PAGES_ALERTS]
            async with aiohttp.ClientSession() as s, s.post(f"{am}/api/v2/alerts", json=body) as r:
                assert r.status == 200
            await wait_for(lambda: len(am_pd.accepted()) >= 7, timeout=20)
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "imported.yml").write_text(out.stdout)
        env = {"PD_KEY_DEFAULT": keys["k1"], "PD_KEY_DB": keys["k2"], "PD_KEY_WEB": keys["k3"]}
        port = free_port()
        proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(tmp_path / "rules"), "--upstream",
                      proxy_pd.url, env=env)
        await asyncio.to_thread(wait_port, port)
        am_body = {"version": "4", "alerts": [{"status": "firing", "labels": a,
                                               "annotations": {"summary": f"{a['alertname']} is bad",
                                                               "runbook": "rb"}} for a in PAGES_ALERTS]}
        async with aiohttp.ClientSession() as s, \
                s.post(f"http://127.0.0.1:{port}/v1/alertmanager", json=am_body) as r:
            assert r.status == 200
        await wait_for(lambda: len(proxy_pd.accepted()) >= 7, timeout=20)
        await asyncio.sleep(1.5)
    finally:
        await am_pd.stop()
        await proxy_pd.stop()
    theirs = {_page_id(x.body): x.body for x in am_pd.accepted()}
    ours = {_page_id(x.body): x.body for x in proxy_pd.accepted()}
    assert len(theirs) == 7 and set(ours) == set(theirs), (sorted(theirs), sorted(ours))
    for page, am in theirs.items():
        mine = ours[page]
        assert mine["payload"]["severity"] == am["payload"]["severity"], (page, mine["payload"], am["payload"])
        # (Alertmanager's subject ends in a space when no label beyond the group's is shared)
        assert mine["payload"]["summary"] == am["payload"]["summary"].strip(), (page, mine["payload"])
        for field in ("component", "group"):
            assert mine["payload"].get(field) == am["payload"].get(field), (page, field)
        if am.get("links"):
            assert mine.get("links") == am["links"], page
        if am.get("client") != "Alertmanager":
            assert mine["client"] == am["client"], page
        for k, v in am["payload"]["custom_details"].items():
            if k in ("runbook", "count", "name"):
                assert mine["payload"]["custom_details"][k] == v, (page, k)
