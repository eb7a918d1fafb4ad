"""Silences the way on-call makes them: the real `amtool` (Debian's prometheus-alertmanager)
against a running proxy, on SQLite and on Redis: add, query, update, expire, `alert query`;
a storm of the silenced alert reaches PagerDuty as nothing while another alert pages; a
silence survives a restart; bad bodies get Alertmanager's 400 with the reason."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid

import aiohttp
import pytest

from tests.conftest import wait_for, write_rules
from tests.support.net import free_port, wait_port
from tests.support.proxies import RULES

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool is not installed "
                                 "(Debian: prometheus-alertmanager; tests/run.sh installs it)")]


def amtool(url: str, *args: str) -> str:
    done = subprocess.run(["amtool", f"--alertmanager.url={url}", *args], capture_output=True, check=False,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def am(url: str, *args: str) -> str:
    """amtool off the event loop (the fake PagerDuty answers meanwhile)."""
    return await asyncio.to_thread(amtool, url, *args)


def alert(name: str, i: int, service: str = "checkout") -> dict[str, object]:
    return {"status": "firing", "labels": {"alertname": name, "service": service, "i": str(i)},
            "annotations": {"summary": f"{name} {i}"}, "fingerprint": f"{name}-{i}"}


async def post(url: str, alerts: list[dict[str, object]]) -> None:
    async with aiohttp.ClientSession() as s, s.post(url + "/v1/alertmanager", json={
            "version": "4", "status": "firing", "alerts": alerts}) as r:
        assert r.status == 200, await r.text()


@pytest.fixture(params=["sqlite", "redis"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/state.db"
    return str(request.getfixturevalue("redis_server").url)


async def test_amtool_silences_a_storm_and_the_silence_survives_a_restart(
        tmp_path, fake_pd, proxy_process, store_url):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rules = write_rules(tmp_path / "rules", RULES)
    args = ("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--store", store_url,
            "--store-prefix", f"sil-{uuid.uuid4().hex[:8]}", "--upstream", fake_pd.url)
    p = proxy_process(*args, name="proxy")
    await asyncio.to_thread(wait_port, port)

    sid = (await am(url, "silence", "add", "alertname=Noisy", 'service=~"checkout|cart"',
                 "--duration", "2h", "--comment", "fix rolling out")).strip()
    assert len(sid) == 36
    listed = await am(url, "silence", "query")
    assert sid in listed and 'service=~"checkout|cart"' in listed and "fix rolling out" in listed
    assert (await am(url, "silence", "query", "-q", "alertname=Noisy")).split() == [sid]

    await post(url, [alert("Noisy", i) for i in range(200)] + [alert("Other", 0)])
    await wait_for(lambda: any(r.action == "trigger" for r in fake_pd.accepted()), timeout=20)
    await asyncio.sleep(2.5)  # another group_interval: the silenced group stays quiet
    triggered = {r.body["payload"]["summary"] for r in fake_pd.accepted() if r.action == "trigger"}
    assert len(triggered) == 1 and "Other" in triggered.pop()

    async with aiohttp.ClientSession() as session, session.get(url + "/metrics") as r:
        metrics = await r.text()
    assert 'alert_proxy_alerts_suppressed_total{reason="silenced"} 200.0' in metrics
    shown = await am(url, "alert", "query", "-s")
    assert "Noisy" in shown and "suppressed" in shown and "Other" not in shown
    plain = await am(url, "alert", "query")
    assert "Other" in plain and "Noisy" not in plain

    p.stop()  # a restart: the silence is in the store
    p = proxy_process(*args, name="proxy-again")
    await asyncio.to_thread(wait_port, port)
    assert (await am(url, "silence", "query", "-q")).split() == [sid]
    await am(url, "silence", "update", sid, "--duration", "3h", "--comment", "longer")
    assert "longer" in await am(url, "silence", "query")
    assert (await am(url, "silence", "query", "-q")).split() == [sid]  # updated in place

    await am(url, "silence", "expire", sid)
    assert (await am(url, "silence", "query", "-q")).split() == []
    assert sid in await am(url, "silence", "query", "--expired")
    await post(url, [alert("Noisy", 500)])  # no longer silenced: the group pages
    await wait_for(lambda: any("Noisy" in r.body["payload"]["summary"] for r in fake_pd.accepted()
                               if r.action == "trigger"), timeout=20)
    assert f"silence {sid} expired by" in p.log.read_text()  # who did what, in the log
    assert "fix rolling out" in (tmp_path / "proxy.log").read_text()


@pytest.mark.parametrize(("body", "reason"), [
    ({"matchers": [{"name": "a", "value": "(", "isRegex": True}]}, "not a valid regular expression"),
    ({"matchers": [{"name": "a", "value": "b", "isRegex": False}],
      "startsAt": "2030-01-01T02:00:00Z", "endsAt": "2030-01-01T01:00:00Z"}, "end time must not be before start time"),
    ({"matchers": [{"name": "a", "value": ".*", "isRegex": True}]}, "must not match the empty string"),
    ({"matchers": [{"name": "a", "value": "b"}]}, "isRegex is required"),
    ({"matchers": []}, "at least one matcher"),
    ({"matchers": [{"name": "a", "value": "b", "isRegex": False}], "startsAt": "yesterday"}, "RFC 3339"),
    ("not an object", "JSON object"),
])
async def test_bad_silences_get_alertmanagers_400_with_the_reason(make_proxy, fake_pd, body, reason):
    client = await make_proxy(fake_pd.url)
    if isinstance(body, dict):
        body = {"startsAt": "2030-01-01T00:00:00Z", "endsAt": "2030-01-01T01:00:00Z",
                "createdBy": "me", "comment": "why", **body}
    r = await client.post("/api/v2/silences", json=body)
    assert r.status == 400
    assert reason in await r.json()
    r = await client.post("/api/v2/silences", data=b"{not json")
    assert r.status == 400
    r = await client.get("/api/v2/silences", params={"filter": "alertname~~x"})  # no such operator
    assert r.status == 400 and "bad matcher format" in await r.json()
    assert (await client.delete("/api/v2/silence/nope")).status == 404
    assert (await client.get("/api/v2/silence/nope")).status == 404


async def test_silences_are_admin_paths_and_amtool_sends_basic_auth(tmp_path, fake_pd, proxy_process):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rules = write_rules(tmp_path / "rules", RULES)
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--upstream", fake_pd.url,
                  "--auth", "admin=basic:oncall:pw", name="proxy")
    await asyncio.to_thread(wait_port, port)
    async with aiohttp.ClientSession() as s, s.get(url + "/api/v2/silences") as r:
        assert r.status == 401  # no credentials
    config = tmp_path / "http.yml"
    config.write_text("basic_auth:\n  username: oncall\n  password: pw\n")
    sid = (await am(url, f"--http.config.file={config}", "silence", "add",
                                   "alertname=X", "--comment", "c", "--duration", "1h")).strip()
    assert len(sid) == 36
    log = (tmp_path / "proxy.log").read_text()
    assert f"silence {sid} created by oncall" in log and "pw" not in log
