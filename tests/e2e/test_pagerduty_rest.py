"""PagerDuty's REST API through the real CLI, against the strict fake REST API whose incidents
come from the events the fake Events API accepted: with no webhook ever sent, an
acknowledge and a resolve made in PagerDuty reach the group within a sync interval;
`alert-proxy sync` does it at once and prints what changed; a rule's `notes:` and a failed
remediation become notes on the incident once (also across a restart); `doctor` names
each broken link."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import ROOT, wait_for, write_rules
from tests.e2e.test_loop import RULES, FixEndpoint, fire, triggers
from tests.support.fakepd_rest import FakePagerDutyREST
from tests.support.net import free_port, wait_port

pytestmark = pytest.mark.e2e
TOKEN = "u+restToken-4f9a8b7c6d5e"
ADMIN = "admin-token-3c4d"


@pytest.fixture
async def rest(fake_pd):
    fake = FakePagerDutyREST(fake_pd, token=TOKEN)
    await fake.start()
    yield fake
    await fake.stop()


def flags(tmp_path: Path, rest: FakePagerDutyREST, port: int, rules: str, interval: str) -> list[str]:
    return ["--listen", f"127.0.0.1:{port}", "--rules", str(write_rules(tmp_path / "rules", rules)),
            "--upstream", rest.events.url, "--store", f"sqlite://{tmp_path / 'state.db'}",
            "--pagerduty-api-url", rest.url, "--pagerduty-from", "oncall@example.com",
            "--pagerduty-sync-interval", interval, "--auth", "admin=bearer:${ADMIN_TOKEN}"]


async def serve(proxy_process, args: list[str], token: bool = True, name: str = "proxy") -> Any:
    # the token from PD_API_TOKEN, as the issue names it
    env = {"ADMIN_TOKEN": ADMIN, "RUNDECK_TOKEN": "rd-token-xyz", **({"PD_API_TOKEN": TOKEN} if token else {})}
    proc = proxy_process(*args, env=env, name=name)
    port = int(args[1].rsplit(":", 1)[1])
    await asyncio.to_thread(wait_port, port)
    return proc


async def group(base: str, key: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(
            base + "/api/v1/groups", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        assert r.status == 200
        found = [g for g in (await r.json())["groups"] if g["dedup_key"] == key]
    return found[0] if found else {}


async def until_group(base: str, key: str, cond, timeout: float) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    async def check() -> bool:
        nonlocal seen
        seen = await group(base, key)
        return bool(cond(seen))

    loop_deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < loop_deadline, f"group never got there: {seen}"
        await asyncio.sleep(0.2)
    return seen


def pd_state(g: dict[str, Any]) -> dict[str, Any]:
    return g.get("state", {}).get("pd", {})


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], check=False, capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={**os.environ, "ADMIN_TOKEN": ADMIN, **(env or {})})


async def test_an_ack_and_a_resolve_made_in_pagerduty_reach_the_group_within_a_sync_interval(
        tmp_path, fake_pd, rest, proxy_process):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    await serve(proxy_process, flags(tmp_path, rest, port, RULES.replace("repeat_interval: 3s",
                                                                         "repeat_interval: 6s"), "1s"))
    await fire(base, "web1")
    await wait_for(lambda: len(triggers(fake_pd)) == 1, timeout=10)
    key = triggers(fake_pd)[0]["dedup_key"]
    rest.acknowledge(key, "Jane Doe")  # in PagerDuty's UI; the webhook is lost
    g = await until_group(base, key, lambda g: pd_state(g).get("status") == "acknowledged", 4)
    assert pd_state(g)["by"] == "Jane Doe" and pd_state(g)["incident"] == "PINC0001"
    await asyncio.sleep(6.5)  # past repeat_interval (6s): acknowledged holds the repeat
    assert len(triggers(fake_pd)) == 1
    rest.resolve(key)
    await until_group(base, key, lambda g: pd_state(g).get("status") == "resolved", 4)
    await fire(base, "web1", status="resolved")
    await asyncio.sleep(3)  # resolve_wait (group_interval 1s) and more
    assert fake_pd.by_dedup()[key] == ["trigger"]  # a person resolved it: nothing more to send
    async with aiohttp.ClientSession() as s, s.get(base + "/metrics",
                                                   headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        metrics = await r.text()
    assert "alert_proxy_pagerduty_sync_changes_total 2.0" in metrics
    log = (tmp_path / "proxy.log").read_text()
    assert log.count("PagerDuty sync: incident state corrected") == 2 and TOKEN not in log
    assert rest.violations == [] and fake_pd.violations == []


async def test_alert_proxy_sync_corrects_at_once_and_prints_what_changed(tmp_path, fake_pd, rest, proxy_process):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = flags(tmp_path, rest, port, RULES, "1h")
    await serve(proxy_process, args)
    await fire(base, "web1")
    await wait_for(lambda: len(triggers(fake_pd)) == 1, timeout=10)
    key = triggers(fake_pd)[0]["dedup_key"]
    rest.resolve(key)
    done = await asyncio.to_thread(cli, "sync", *args, env={"PD_API_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{key}: triggered -> resolved (incident PINC0001)"
    assert pd_state(await group(base, key))["status"] == "resolved"
    again = await asyncio.to_thread(cli, "sync", *args, env={"PD_API_TOKEN": TOKEN})
    assert again.returncode == 0 and again.stdout.startswith("no changes")
    wrong = await asyncio.to_thread(cli, "sync", *args, env={"ADMIN_TOKEN": "nope"})
    assert wrong.returncode == 1 and "401" in wrong.stderr and "nope" not in wrong.stderr


async def test_sync_says_why_it_cannot_run(tmp_path, fake_pd, rest, proxy_process):
    port = free_port()
    args = flags(tmp_path, rest, port, RULES, "1m")
    down = await asyncio.to_thread(cli, "sync", *args)
    assert down.returncode == 1 and f"cannot reach http://127.0.0.1:{port}" in down.stderr
    await serve(proxy_process, args, token=False)
    off = await asyncio.to_thread(cli, "sync", *args)
    assert off.returncode == 1 and "409" in off.stderr and "--pagerduty-api-token" in off.stderr


NOTES = RULES + """
rules:
  - name: restart
    match: {alertname: Down}
    notes:
      - "Runbook: https://runbooks.example.com/{{ group_labels.alertname | lower }}"
      - "Firing on: {{ alerts | map(attribute='labels.instance') | sort | join(', ') }}"
    remediate:
      url: "http://127.0.0.1:%(port)d/fix?host={{ alert.labels.instance }}"
      headers: {X-Token: "${RUNDECK_TOKEN}"}
      body: '{"host": "{{ alert.labels.instance }}"}'
      timeout: 1s
      wait: 2s
"""


async def test_a_rules_notes_and_a_failed_remediation_reach_the_incident_once(
        tmp_path, fake_pd, rest, proxy_process):
    rest.lag = 1.5  # the incident appears after the Events API's 202 (REST-FACTS 1.5)
    rest.throttle, rest.fail = 1, 1  # the sync at start meets a 429 and a 500
    async with FixEndpoint("500") as endpoint:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        args = flags(tmp_path, rest, port, NOTES % {"port": endpoint.port}, "2s")
        first = await serve(proxy_process, args)
        await fire(base, "web1", "web2")
        await wait_for(lambda: len(triggers(fake_pd)) == 1, timeout=10)
        key = triggers(fake_pd)[0]["dedup_key"]
        await wait_for(lambda: rest.open_for(key) is not None and len(rest.open_for(key).notes) >= 3,
                       timeout=20)
        await asyncio.sleep(4)  # a repeat trigger (3s) and two syncs later: nothing more
        assert len(triggers(fake_pd)) >= 2
        first.stop()
        await serve(proxy_process, args, name="again")  # a restart: the store remembers
        await asyncio.sleep(5)
        inc = rest.open_for(key)
        assert inc is not None
        rest.resolve(key)  # in PagerDuty. Then either a repeat goes out first (PagerDuty
        for _ in range(100):  # opens a new incident for it) or the sync learns of the resolve
            if rest.open_for(key) is not None or pd_state(await group(base, key)).get("status") == "resolved":
                break
            await asyncio.sleep(0.1)
        await fire(base, "web3")  # and a new alert pages: a new incident, if none is open yet
        await wait_for(lambda: rest.open_for(key) is not None and len(rest.open_for(key).notes) >= 2,
                       timeout=20)
        await asyncio.sleep(3)
    second = rest.open_for(key)
    assert second is not None and second.id != inc.id
    runbook, firing = [n["content"] for n in second.notes]  # (the remediation preceded the first)
    assert runbook == "Runbook: https://runbooks.example.com/down"
    assert firing in ("Firing on: web1, web2, web3", "Firing on: web1, web2")  # (when it was written)
    contents = [n["content"] for n in inc.notes]
    assert contents[:2] == ["Runbook: https://runbooks.example.com/down", "Firing on: web1, web2"]
    assert len(contents) == 3 and contents[2].startswith("alert-proxy: the remediation before this "
                                                          "page failed (HTTP 500)")
    assert "rundeck: job failed to start" in contents[2]
    assert all(n["user"]["summary"] == "oncall@example.com" for n in inc.notes)
    assert rest.calls("POST", "/incidents/") == 5 and rest.violations == []
    logs = (tmp_path / "proxy.log").read_text() + (tmp_path / "again.log").read_text()
    assert logs.count('"incident notes written"') == 2 and TOKEN not in logs


DOCTOR_RULES = RULES + """
rules:
  - name: db
    match: {team: db}
    notes: ["Runbook: https://runbooks.example.com/db"]
"""


async def test_doctor_says_all_is_well_when_it_is(tmp_path, fake_pd, rest):
    args = flags(tmp_path, rest, free_port(), DOCTOR_RULES, "5m")
    done = await asyncio.to_thread(cli, "doctor", *args, env={"PD_API_TOKEN": TOKEN})
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert lines[-1] == "all links ok" and not any(x.startswith("FAIL") for x in lines)
    assert any(x.startswith("ok    PagerDuty REST API") and "valid" in x for x in lines)
    assert any(x.startswith("ok    routing keys: 1 well formed: PD_ROUTING_KEY") for x in lines)
    assert not (tmp_path / "state.db").exists()  # checked, not made
    assert rest.calls("GET", "/abilities") == 1 and len(rest.requests) == 1
    assert fake_pd.received == []  # no event sent


async def test_doctor_names_each_broken_link(tmp_path, fake_pd, rest):
    closed = free_port()
    args = flags(tmp_path, rest, free_port(), DOCTOR_RULES, "5m")
    args[args.index("--upstream") + 1] = f"http://127.0.0.1:{closed}"
    args[args.index("--store") + 1] = f"redis://127.0.0.1:{closed}/0"
    args.remove("--pagerduty-from")
    args.remove("oncall@example.com")
    done = await asyncio.to_thread(cli, "doctor", *args, env={"PD_API_TOKEN": "u+revokedToken77"})
    assert done.returncode == 1
    fails = [x for x in done.stdout.splitlines() if x.startswith("FAIL")]
    assert [x.split(":")[0] for x in fails] == ["FAIL  store", "FAIL  upstream", "FAIL  PagerDuty REST API"]
    assert "token is refused (401" in fails[2] and "revokedToken" not in done.stdout
    assert done.stdout.splitlines()[-1] == "3 problem(s) found"
    # a rule file that does not load, and notes with no token to write them
    (tmp_path / "rules" / "rules.yml").write_text(DOCTOR_RULES + "  - name: x\n    group_wait: soon\n")
    done = await asyncio.to_thread(cli, "doctor", *args)
    fails = [x for x in done.stdout.splitlines() if x.startswith("FAIL")]
    assert done.returncode == 1 and fails[0].startswith("FAIL  rules: ") and "rules.yml:" in fails[0]
    (tmp_path / "rules" / "rules.yml").write_text(DOCTOR_RULES)
    done = await asyncio.to_thread(cli, "doctor", *args)
    assert any("notes" in x and "no --pagerduty-api-token" in x
               for x in done.stdout.splitlines() if x.startswith("FAIL"))


def test_the_token_never_shows_in_help():
    for command in ("serve", "doctor", "sync"):
        for var in ("PD_API_TOKEN", "ALERT_PROXY_PAGERDUTY_API_TOKEN"):
            done = cli(command, "--help", env={var: TOKEN})
            assert done.returncode == 0 and "--pagerduty-api-token" in done.stdout
            assert TOKEN not in done.stdout
