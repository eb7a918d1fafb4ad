"""The console in a real browser (Debian's Chromium, driven by Playwright): after a storm
through the real CLI, every page renders, the figures it shows equal the API's, an alert
label that is HTML renders as text, the dead letters' re-send button works and refuses
cross-site requests, and basic auth works in a browser. Screenshots go to test-artifacts/.

`alert-proxy report` for a known storm matches what the fake PagerDuty received."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import KEY, ROOT, wait_for, write_rules
from tests.support.net import free_port, wait_port
from tests.support.storm import outage, post_batches

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None,
                                reason="needs Debian's chromium (tests/run.sh installs it)")
ARTIFACTS = ROOT / "test-artifacts"
RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname, service]
  group_wait: 500ms
  group_interval: 1s
  repeat_interval: 1h
rules:
  - name: drop-dev
    match: {env: dev}
    drop: true
  - name: database
    match: {service: db}
    group_by: [alertname]
    severity: critical
"""
XSS = "<script>alert(1)</script>"


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        await b.close()


async def storm(base: str) -> int:
    """Alerts from two tools in 25 groups (20 outage groups, one alert whose name is HTML, a
    database alert, three Datadog monitors), and one alert the rules drop."""
    alerts = outage(kinds=("Down", "Latency"), services=10, instances=5)
    alerts += [{"labels": {"alertname": XSS, "service": "web"}, "fingerprint": "xss"},
               {"labels": {"alertname": "DiskFull", "service": "db", "instance": "db1"}, "fingerprint": "db1"},
               {"labels": {"alertname": "Noise", "env": "dev"}, "fingerprint": "dev"}]
    assert {st for _, st in await post_batches(base + "/v1/alertmanager", alerts, "firing")} == {200}
    async with aiohttp.ClientSession() as s:
        for i in range(3):
            async with s.post(base + "/v1/datadog", json={"title": f"[Triggered] Datadog monitor {i}",
                                                          "tags": f"service:svc{i}"}) as r:
                assert r.status == 200
    return len(alerts) + 3


async def api(base: str, path: str, **kw: Any) -> Any:
    async with aiohttp.ClientSession() as s, s.get(base + path, **kw) as r:
        return await r.json()


async def serve(tmp_path, fake_pd, proxy_process, *extra: str) -> str:
    port = free_port()
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(write_rules(tmp_path / "rules", RULES)),
                  "--upstream", fake_pd.url, "--store", f"sqlite://{tmp_path}/state.db", *extra)
    await asyncio.to_thread(wait_port, port)
    return f"http://127.0.0.1:{port}"


def number(text: str) -> int:
    return int(text.replace(",", ""))


async def test_console_pages_in_a_browser(tmp_path, fake_pd, proxy_process, browser):
    base = await serve(tmp_path, fake_pd, proxy_process)
    sent = await storm(base)
    await wait_for(lambda: len(fake_pd.accepted()) >= 25, timeout=20)
    await asyncio.sleep(2.5)  # the figures are written every 2 s
    stats = await api(base, "/api/v1/stats?since=24h")
    assert stats["alerts_in"] == sent and stats["pages_out"] == len(fake_pd.accepted())
    page = await browser.new_page(viewport={"width": 1300, "height": 1000})
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    ARTIFACTS.mkdir(exist_ok=True)

    await page.goto(base + "/")
    assert number(await page.inner_text("#alerts-in")) == stats["alerts_in"]
    assert number(await page.inner_text("#pages-out")) == stats["pages_out"]
    assert await page.inner_text("#noise-ratio") == stats["noise_ratio"]
    assert number(await page.inner_text('[data-reason="dropped"]')) == stats["suppressed"]["dropped"] == 1
    assert await page.locator("#chart rect").count() >= 2
    assert XSS in await page.inner_text("#top-alertnames")  # as text
    await page.screenshot(path=str(ARTIFACTS / "console-overview.png"), full_page=True)

    await page.goto(base + "/groups")
    groups = (await api(base, "/api/v1/groups"))["groups"]
    assert number(await page.inner_text("#group-count")) == len(groups) == 25
    assert await page.locator("tr.group").count() == 25
    assert XSS in await page.inner_text("#groups")
    assert await page.evaluate("document.scripts.length") == 0
    await page.screenshot(path=str(ARTIFACTS / "console-groups.png"), full_page=True)
    await page.goto(base + "/groups?q=rule%3Ddatabase+alertname%3DDiskFull")
    assert await page.locator("tr.group").count() == 1
    assert "paged" in await page.inner_text("tr.group .state")
    await page.goto(base + "/groups?q=service%3Dsvc3")
    assert await page.locator("tr.group").count() == 2  # Down and Latency of svc3

    await page.goto(base + "/rules")
    assert "drop-dev" in await page.inner_text("#rules") and await page.inner_text("#reload-status") == "ok"
    await page.screenshot(path=str(ARTIFACTS / "console-rules.png"), full_page=True)
    assert dialogs == []  # no script from an alert ever ran


async def test_dead_letters_are_resent_from_the_console_and_cross_site_is_refused(
        tmp_path, fake_pd, proxy_process, browser):
    base = await serve(tmp_path, fake_pd, proxy_process)
    fake_pd.answer = 403
    async with aiohttp.ClientSession() as s, s.post(base + "/v2/enqueue", json={
            "routing_key": KEY, "event_action": "trigger", "dedup_key": "d1",
            "payload": {"summary": "disk full", "source": "db1", "severity": "error"}}) as r:
        assert r.status == 202
    await wait_for(lambda: fake_pd.count(403) == 1)
    await asyncio.sleep(0.5)
    page = await browser.new_page()
    await page.goto(base + "/outbox")
    assert await page.inner_text("#dead-count") == "1"
    await page.screenshot(path=str(ARTIFACTS / "console-outbox.png"), full_page=True)
    # another site cannot press the button for you
    async with aiohttp.ClientSession() as s:
        async with s.post(base + "/outbox/retry", data={"csrf": "guess"}) as r:
            assert r.status == 403
        async with s.post(base + "/outbox/retry", data={"csrf": "x"},
                          headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}) as r:
            assert r.status == 403 and "cross-site" in (await r.json())["message"]
    assert (await api(base, "/api/v1/outbox"))["dead"]
    fake_pd.answer = None
    async with page.expect_navigation():
        await page.click("button.retry")
    assert "1 event(s) queued" in await page.inner_text("#message")
    await wait_for(lambda: len(fake_pd.accepted()) == 1)


async def test_basic_auth_works_in_a_browser(tmp_path, fake_pd, proxy_process, browser):
    base = await serve(tmp_path, fake_pd, proxy_process, "--auth", "admin=basic:ops:${CONSOLE_PASSWORD}")
    async with aiohttp.ClientSession() as s, s.get(base + "/") as r:
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    ctx = await browser.new_context(http_credentials={"username": "ops", "password": "s3cret"})
    page = await ctx.new_page()
    resp = await page.goto(base + "/groups")
    assert resp.status == 200 and await page.inner_text("h1")


@pytest.fixture(autouse=True)
def _console_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSOLE_PASSWORD", "s3cret")


async def test_report_matches_what_pagerduty_received(tmp_path, fake_pd, proxy_process):
    base = await serve(tmp_path, fake_pd, proxy_process)
    sent = await storm(base)
    await wait_for(lambda: len(fake_pd.accepted()) >= 25, timeout=20)
    alerts = outage(kinds=("Down",), services=10, instances=5)
    firing_again = await post_batches(base + "/v1/alertmanager", alerts, "firing")  # redelivered
    assert {st for _, st in firing_again} == {200}
    assert {st for _, st in await post_batches(base + "/v1/alertmanager", alerts, "resolved")} == {200}
    await wait_for(lambda: sum(1 for r in fake_pd.accepted() if r.action == "resolve") == 10, timeout=20)
    await asyncio.sleep(2.5)
    r = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "proxy", "report", "--since", "1h",
                                                 "--json", "--store", f"sqlite://{tmp_path}/state.db"],
                                capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    figures = orjson.loads(r.stdout)
    triggers = [x for x in fake_pd.accepted() if x.action == "trigger"]
    assert figures["alerts_in"] == sent + 2 * len(alerts)  # every delivery
    # every distinct alert once (less the one the rules drop), however often it came
    assert figures["alerts_fired"] == sent - 1 and figures["alerts_resolved"] == len(alerts)
    assert figures["pages_out"] == len(triggers) == 25
    assert figures["incidents_opened"] == 25 and figures["repeat_triggers"] == 0
    assert figures["noise_ratio"] == f"{(sent - 1) / 25:.0f}:1"
    assert figures["sent_by_action"] == {"trigger": 25, "resolve": 10}
    assert figures["keys"] == [{"key": "PD_ROUTING_KEY", "sent": 35, "429s": 0}]
    assert figures["suppressed"]["dropped"] == 1
    db = next(x for x in figures["by_rule"] if x["rule"] == "database")
    assert (db["in"], db["pages"], db["ratio"]) == (1, 1, "1:1")
    text = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "proxy", "report", "--url", base,
                                                    "--since", "1h"], capture_output=True, text=True,
                                   cwd=ROOT, timeout=60, check=False)
    assert text.returncode == 0, text.stderr
    assert "noise ratio" in text.stdout and "by rule" in text.stdout and "database" in text.stdout


async def test_a_group_is_silenced_and_the_silence_expired_from_the_console(
        tmp_path, fake_pd, proxy_process, browser):
    """From a group's row to a silence (its labels prefilled), seen by amtool, expired with
    a button; the heartbeats table shows each heartbeat with its last arrival."""
    rules = RULES + "heartbeats:\n  - name: nightly-backup\n    every: 1h\n"
    port = free_port()
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(write_rules(tmp_path / "rules", rules)),
                  "--upstream", fake_pd.url, "--store", f"sqlite://{tmp_path}/state.db")
    await asyncio.to_thread(wait_port, port)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as s, s.post(base + "/v1/alertmanager", json={
            "version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {
                "alertname": "DiskFull", "service": "web"}, "annotations": {"summary": "disk"}}]}) as r:
        assert r.status == 200
    page = await browser.new_page()
    await page.goto(base + "/groups")
    async with page.expect_navigation():
        await page.click("a.silence")
    assert await page.input_value("input[name=matchers]") == 'alertname="DiskFull", service="web"'
    await page.fill("input[name=created_by]", "alice")
    await page.fill("input[name=comment]", "disk cleanup under way")
    async with page.expect_navigation():
        await page.click("#new-silence button")
    assert "made" in await page.inner_text("#message")
    assert "disk cleanup under way" in await page.inner_text("#silences")
    assert "nightly-backup" in await page.inner_text("#heartbeats")
    await page.screenshot(path=str(ARTIFACTS / "console-oncall.png"), full_page=True)
    shown = (await asyncio.to_thread(subprocess.run, ["amtool", f"--alertmanager.url={base}", "silence",
                                                      "query"], capture_output=True, text=True,
                                     check=True)).stdout
    assert 'alertname="DiskFull"' in shown and "alice" in shown
    async with aiohttp.ClientSession() as s, s.post(base + "/oncall/expire", data={"csrf": "guess", "id": "x"}) as r:
        assert r.status == 403  # another site cannot press the button for you
    async with page.expect_navigation():
        await page.click("button.expire")
    assert "no active or pending silence" in await page.inner_text("#silences")
