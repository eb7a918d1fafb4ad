"""The command line as ops use it: check, test, reload, deadletter."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import aiohttp

from tests.conftest import FAST_RULES, ROOT, wait_for, write_rules
from tests.support.invalid_rules import EXPECTED
from tests.support.net import free_port, wait_port

INVALID = ROOT / "tests" / "fixtures" / "invalid_rules"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=60, check=False)


def test_check_reports_file_line_message():
    """Every error kind is checked in process (tests/unit/test_schema.py); here, once,
    the command as ops run it in CI."""
    rel = "tests/fixtures/invalid_rules/bad_duration.yml"
    r = cli("check", rel)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"{rel}:{EXPECTED['bad_duration']}"]


def test_check_accepts_the_example_rules():
    r = cli("check", "rules/", env={"PD_DB_KEY": "0123456789abcdef0123456789abcdef"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: ")


def test_example_rules_pass_their_unit_tests():
    r = cli("test", "rules/")
    assert r.returncode == 0, r.stdout + r.stderr
    import yaml

    n = sum(len(yaml.safe_load(f.read_text())["tests"]) for f in (ROOT / "rules").glob("*.test.yml"))
    assert n >= 16 and r.stdout.strip().endswith(f"{n} passed, 0 failed")


def test_rule_test_failure_exits_1_with_a_readable_diff(tmp_path):
    write_rules(tmp_path, FAST_RULES)
    (tmp_path / "wrong.test.yml").write_text("""
rule_files: [rules.yml]
env: {PD_ROUTING_KEY: 0123456789abcdef0123456789abcdef}
tests:
  - name: expects the wrong severity
    until: 5s
    input:
      - at: 0s
        alerts: [{labels: {alertname: X, severity: warning}}]
    expect:
      - event_action: trigger
        payload: {severity: critical}
      - event_action: resolve
""")
    r = cli("test", str(tmp_path / "wrong.test.yml"))
    assert r.returncode == 1
    out = r.stdout
    assert "FAIL" in out and "expects the wrong severity" in out
    assert 'event 1: .payload.severity: expected "critical", got "warning"' in out
    assert "event 2: expected" in out and "only 1 event(s) were sent" in out
    assert out.strip().endswith("0 passed, 1 failed")


async def get_json(url: str) -> dict:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return await r.json()


async def metric(base: str, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(base + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not found")


async def test_reload_by_post_sighup_and_file_change(tmp_path, fake_pd, proxy_process):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rules_dir = write_rules(tmp_path / "rules", FAST_RULES)
    p = proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules_dir), "--upstream", fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    ok = "\nrules:\n  - name: one\n    match: {alertname: A}\n"
    async with aiohttp.ClientSession() as s:
        # POST /-/reload
        write_rules(rules_dir, FAST_RULES + ok)
        async with s.post(base + "/-/reload") as r:
            assert r.status == 200 and (await r.json())["rules"] == 1
        # a broken file: 400 naming the problem, the old rules stay, the metric says 0
        write_rules(rules_dir, FAST_RULES + "\nrules:\n  - name: two\n    severity: huge\n")
        async with s.post(base + "/-/reload") as r:
            body = await r.json()
            assert r.status == 400
            assert body["errors"] == [f"{rules_dir}/rules.yml:11: rule 'two': severity: 'huge' is not "
                                      "a PagerDuty severity (critical, error, warning, info)"]
        assert await metric(base, "alert_proxy_config_last_reload_successful") == 0.0
        # SIGHUP
        write_rules(rules_dir, FAST_RULES + ok + "  - name: two\n    match: {alertname: B}\n")
        assert p.proc is not None
        p.proc.send_signal(signal.SIGHUP)
        for _ in range(50):
            if await metric(base, "alert_proxy_config_last_reload_successful") == 1.0:
                break
            await asyncio.sleep(0.1)
        assert await metric(base, "alert_proxy_config_last_reload_successful") == 1.0
        # a file change alone
        before = await metric(base, "alert_proxy_config_last_reload_success_timestamp_seconds")
        await asyncio.sleep(1.1)
        write_rules(rules_dir, FAST_RULES + ok)
        for _ in range(60):
            if await metric(base, "alert_proxy_config_last_reload_success_timestamp_seconds") > before:
                break
            await asyncio.sleep(0.1)
        assert await metric(base, "alert_proxy_config_last_reload_success_timestamp_seconds") > before


async def test_deadletter_list_and_retry_commands(tmp_path, fake_pd, proxy_process):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    rules_dir = write_rules(tmp_path / "rules", FAST_RULES)
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules_dir), "--upstream", fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    fake_pd.answer = 403
    async with aiohttp.ClientSession() as s, s.post(base + "/v2/enqueue", json={
            "routing_key": "0123456789abcdef0123456789abcdef", "event_action": "trigger",
            "payload": {"summary": "s", "source": "s", "severity": "info"}}) as r:
        assert r.status == 202
    await wait_for(lambda: fake_pd.count(403) == 1)
    for _ in range(50):
        if (await get_json(base + "/api/v1/outbox"))["dead"]:
            break
        await asyncio.sleep(0.1)
    r = await asyncio.to_thread(cli, "deadletter", "list", "--url", base)
    assert r.returncode == 0
    [line] = r.stdout.splitlines()
    assert "trigger" in line and "HTTP 403" in line and "0123…cdef" in line
    assert "0123456789abcdef0123456789abcdef" not in r.stdout
    fake_pd.answer = None
    r = await asyncio.to_thread(cli, "deadletter", "retry", "--url", base)
    assert r.stdout.strip() == "requeued 1 event(s)"
    await wait_for(lambda: len(fake_pd.accepted()) == 1)


def test_rule_tests_state_silences_and_heartbeat_timelines(tmp_path):
    write_rules(tmp_path, FAST_RULES + """
heartbeats:
  - name: watchdog
    match: {alertname: Watchdog}
    every: 10s
    grace: 5s
    summary: "no Watchdog for {{ silent_for }}"
""")
    (tmp_path / "oncall.test.yml").write_text("""
rule_files: [rules.yml]
env: {PD_ROUTING_KEY: 0123456789abcdef0123456789abcdef}
tests:
  - name: a silence mutes its alert, not the other
    until: 10s
    silences:
      - {matchers: 'alertname="Noisy"', until: 1h}
    input:
      - {at: 0s, alerts: [{labels: {alertname: Noisy}}, {labels: {alertname: Other}}]}
      - {at: 0s, alerts: [{labels: {alertname: Watchdog}}]}
    expect:
      - {event_action: trigger, payload: {summary: "[FIRING:1] Other"}}
  - name: a Watchdog that stops pages once, and resolves when it is back
    interval: 1s
    until: 40s
    input:
      - {at: 0s, alerts: [{labels: {alertname: Watchdog}}]}
      - {at: 5s, alerts: [{labels: {alertname: Watchdog}}]}
      - {at: 30s, heartbeat: watchdog}
    expect:
      - {at: 20s, event_action: trigger, payload: {summary: no Watchdog for 15s, severity: critical}}
      - {at: 30s, event_action: resolve}
""")
    r = cli("test", str(tmp_path / "oncall.test.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("2 passed, 0 failed")
