"""What an operator meets first (issue 30), through the real CLI: settings that can never
work stop the proxy at once with one line naming them; what can heal (the store,
PagerDuty) is retried and logged when it goes down and when it is back, not at every
attempt; state survives a restart by default; every log line has its time and level."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import orjson

from tests.conftest import FAST_RULES, KEY, ROOT, wait_for, write_rules
from tests.support.net import free_port, wait_port


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, "PD_ROUTING_KEY": KEY, **(env or {})},
                          timeout=60, check=False)


def _one_line(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_what_can_never_work_exits_2_naming_it(tmp_path):
    rules = str(write_rules(tmp_path / "r", FAST_RULES))
    _one_line(cli("serve", "--rules", rules, "--upstream", "events.pagerduty.com"), "--upstream")
    _one_line(cli("serve", "--rules", rules, "--upstream", "https://"), "--upstream")
    _one_line(cli("serve", "--rules", rules, "--store", "sqlite:///sys/state.db"), "--store sqlite:///sys/state.db")
    _one_line(cli("serve", "--rules", rules, "--state-dir", "/proc/no/such"), "/proc/no/such")
    _one_line(cli("serve", "--rules", rules, env={"ALERT_PROXY_DRY_RUN": "maybe"}), "ALERT_PROXY_DRY_RUN")
    _one_line(cli("serve", "--rules", rules, env={"ALERT_PROXY_MAX_GROUPS": "many"}), "ALERT_PROXY_MAX_GROUPS")
    missing = tmp_path / "nothing-here.db"
    _one_line(cli("report", "--store", f"sqlite://{missing}"), "no such file")
    assert not missing.exists()  # (it made an empty database and printed zeros)


async def test_state_survives_a_restart_without_any_store_flag(tmp_path, fake_pd):
    """No --store: SQLite in --state-dir (./data by default, as Alertmanager's
    --storage.path): a restart between a page and its resolve still resolves it."""
    rules = str(write_rules(tmp_path / "r", FAST_RULES))
    port = free_port()
    env = {**os.environ, "PD_ROUTING_KEY": KEY}
    env.pop("ALERT_PROXY_STATE_DIR", None)
    env.pop("ALERT_PROXY_STORE", None)
    args = [sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}", "--rules", rules,
            "--upstream", fake_pd.url]
    log = (tmp_path / "proxy.log").open("ab")
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    try:
        await asyncio.to_thread(wait_port, port)
        url = f"http://127.0.0.1:{port}/v1/alertmanager"
        alert = {"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "Disk"}}]}
        async with aiohttp.ClientSession() as s, s.post(url, json=alert) as r:
            assert r.status == 200
        await wait_for(lambda: len(fake_pd.accepted()) == 1, timeout=10)
    finally:
        first.terminate()
        first.wait(10)
    assert (tmp_path / "data" / "state.db").is_file()
    second = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: ASYNC220
    try:
        await asyncio.to_thread(wait_port, port)
        alert["alerts"][0]["status"] = "resolved"
        async with aiohttp.ClientSession() as s, s.post(url, json=alert) as r:
            assert r.status == 200
        await wait_for(lambda: [x.action for x in fake_pd.accepted()] == ["trigger", "resolve"], timeout=10)
    finally:
        second.terminate()
        second.wait(10)
    lines = [orjson.loads(x) for x in (tmp_path / "proxy.log").read_text().splitlines() if x.startswith("{")]
    assert all("ts" in x and "level" in x for x in lines), [x for x in lines if "ts" not in x][:3]
    assert sum(1 for x in lines if x["msg"] == "alert-proxy listening") == 2
    assert sum(1 for x in lines if x["msg"] == "alert-proxy stopped") == 2
    assert all("data/state.db" in x["store"] for x in lines if x["msg"] == "alert-proxy listening")


async def test_an_outage_is_logged_when_it_starts_and_ends_not_per_attempt(tmp_path, fake_pd,
                                                                           proxy_process, own_redis):
    port = free_port()
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(write_rules(tmp_path / "r", FAST_RULES)),
                  "--store", own_redis.url, "--upstream", fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    url = f"http://127.0.0.1:{port}/v1/alertmanager"

    async def post(name: str) -> int:
        body = {"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": name}}]}
        async with aiohttp.ClientSession() as s, s.post(url, json=body) as r:
            return r.status

    own_redis.stop()
    t0 = time.monotonic()
    statuses = []
    while time.monotonic() - t0 < 4:  # requests keep coming and are answered 503
        statuses.append(await post("Down"))
        await asyncio.sleep(0.1)
    assert set(statuses) == {503}
    own_redis.start()
    await wait_for(lambda: "store available again" in (tmp_path / "proxy.log").read_text(), timeout=15)
    fake_pd.answer = 500  # and PagerDuty fails for a while
    assert await post("A") == 200
    assert await post("B") == 200
    await asyncio.sleep(3)
    fake_pd.answer = None
    await wait_for(lambda: len(fake_pd.accepted()) >= 2, timeout=30)
    await asyncio.sleep(0.5)
    lines = [orjson.loads(x) for x in (tmp_path / "proxy.log").read_text().splitlines() if x.startswith("{")]
    msgs = [x["msg"] for x in lines if x["level"] in ("warning", "error")]
    assert msgs.count("store unavailable; retrying (logged again when it is back)") == 1, msgs
    assert msgs.count("store available again") == 1, msgs
    assert msgs.count("PagerDuty unavailable; retrying (logged again when it is back)") == 1, msgs
    assert msgs.count("PagerDuty available again") == 1, msgs
    assert len(msgs) <= 6, msgs
