"""Closing the loop with PagerDuty through the real CLI: signed webhooks v3 built from
PagerDuty's own example payloads, and remediation before paging against a real HTTP
endpoint of the test's (including kill -9 during the wait, on SQLite and Redis)."""

from __future__ import annotations

import asyncio
import copy
import signal
import uuid
from pathlib import Path
from typing import Any, Self

import aiohttp
import orjson
import pytest
from aiohttp import web

from proxy.ingest.pagerduty import sign
from tests.conftest import ROOT, wait_for, write_rules
from tests.support.net import free_port, wait_port

EXAMPLES = ROOT / "tests" / "fixtures" / "pagerduty-webhooks-v3"  # PagerDuty's own examples
SECRET = "whsec-" + "a1b2c3d4" * 6
OLD_SECRET = "whsec-old-" + "9" * 40

RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname]
  group_wait: 500ms
  group_interval: 1s
  repeat_interval: 3s
"""


def envelope(kind: str, incident_key: str, n: int) -> bytes:
    """A webhook body as PagerDuty sends it: the example envelope with the example
    incident, for our incident_key."""
    env = orjson.loads((EXAMPLES / "envelope_incident_priority_updated.json").read_bytes())
    data = copy.deepcopy(orjson.loads((EXAMPLES / "data_incident.json").read_bytes()))
    data.update(incident_key=incident_key, status={"acknowledged": "acknowledged",
                                                   "resolved": "resolved"}.get(kind, "triggered"))
    env["event"].update(id=f"01ABC{n:04d}", event_type=f"incident.{kind}", data=data,
                        occurred_at=f"2026-11-23T12:00:{n:02d}.000Z")
    return orjson.dumps(env)


async def deliver(base: str, body: bytes, secret: str | None = SECRET, webhook_id: str | None = None,
                  signature: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json", "X-Webhook-Id": webhook_id or str(uuid.uuid4())}
    if signature is not None:
        headers["X-PagerDuty-Signature"] = signature
    elif secret:
        headers["X-PagerDuty-Signature"] = sign(secret, body)
    async with aiohttp.ClientSession() as s, s.post(base + "/v1/pagerduty", data=body, headers=headers) as r:
        return r.status, await r.json()


async def start(tmp_path, fake_pd, proxy_process, rules: str = RULES, store: str = "memory://",
                name: str = "proxy", port: int | None = None, secret: bool = True) -> tuple[str, Any]:
    port = port or free_port()
    args = ["--listen", f"127.0.0.1:{port}", "--rules", str(write_rules(tmp_path / "rules", rules)),
            "--upstream", fake_pd.url, "--store", store]
    if secret:
        args += ["--pagerduty-webhook-secret", SECRET, "--pagerduty-webhook-secret", "${OLD_PD_SECRET}"]
    proc = proxy_process(*args, name=name, env={"OLD_PD_SECRET": OLD_SECRET,
                                                "RUNDECK_TOKEN": "rd-token-xyz"})
    await asyncio.to_thread(wait_port, port)
    return f"http://127.0.0.1:{port}", proc


async def fire(base: str, *instances: str, status: str = "firing") -> None:
    body = {"version": "4", "alerts": [{"status": status, "labels": {"alertname": "Down", "instance": i}}
                                       for i in instances]}
    async with aiohttp.ClientSession() as s, s.post(base + "/v1/alertmanager", json=body) as r:
        assert r.status == 200


def triggers(pd) -> list[dict[str, Any]]:
    return [r.body for r in pd.accepted() if r.action == "trigger"]


async def test_webhook_sequence_ack_resolved_by_a_person_then_a_new_alert(tmp_path, fake_pd, proxy_process):
    base, _ = await start(tmp_path, fake_pd, proxy_process)
    await fire(base, "a")
    await wait_for(lambda: len(triggers(fake_pd)) == 1)
    key = triggers(fake_pd)[0]["dedup_key"]
    assert await deliver(base, envelope("acknowledged", key, 1)) == (200, {
        "status": "success", "verdict": "applied", "actions": []})
    await asyncio.sleep(7)  # two repeat intervals: no repeat while acknowledged
    assert len(triggers(fake_pd)) == 1
    async with aiohttp.ClientSession() as s, s.get(base + "/api/v1/groups") as r:
        [g] = (await r.json())["groups"]
    assert g["state"]["pd"]["status"] == "acknowledged" and g["state"]["pd"]["by"] == "Tenex Engineer"
    resolved = envelope("resolved", key, 2)  # a person resolved it; signed during a rotation
    assert (await deliver(base, resolved, signature=f"{sign('retired', resolved)},"
                          f"{sign(SECRET, resolved)}"))[0] == 200
    async with aiohttp.ClientSession() as s, s.get(base + "/api/v1/stats?since=14d") as r:
        stats = await r.json()  # one incident, acknowledged and resolved (the envelopes are dated
        # 2026-11-23: counted in that hour): MTTA/MTTR per rule
    assert stats["incidents_opened"] == 1 and stats["repeat_triggers"] == 0
    [row] = [r for r in stats["by_rule"] if r["pages"]]
    assert row["incidents"] == 1 and row["mtta_s"] is not None and row["mttr_s"] is not None, (row, stats["time_to_acknowledge"], stats["time_to_resolve"])
    [row] = [r for r in stats["by_service"] if r["pages"]]
    assert row["mtta_s"] == stats["time_to_acknowledge"]["mean_s"]
    await fire(base, "a")  # the same alert, still firing at its sender
    await asyncio.sleep(7)
    assert len(triggers(fake_pd)) == 1 and not any(r.action == "resolve" for r in fake_pd.accepted())
    await fire(base, "a", "b")  # a new alert: one new trigger
    await wait_for(lambda: len(triggers(fake_pd)) == 2, timeout=10)
    await asyncio.sleep(2)
    new = triggers(fake_pd)[1]
    assert len(triggers(fake_pd)) == 2 and new["dedup_key"] == key
    assert new["payload"]["custom_details"]["why"] == "first"
    assert fake_pd.violations == []


async def test_bad_webhooks_change_nothing(tmp_path, fake_pd, proxy_process):
    base, _ = await start(tmp_path, fake_pd, proxy_process)
    await fire(base, "a")
    await wait_for(lambda: len(triggers(fake_pd)) == 1)
    key = triggers(fake_pd)[0]["dedup_key"]
    ack = envelope("acknowledged", key, 1)
    for body, kw, status, needle in [
        (ack, {"secret": None}, 401, "X-PagerDuty-Signature header is missing"),
        (ack, {"secret": "wrong-secret"}, 401, "does not match"),
        (ack, {"signature": "v1=" + "0" * 64}, 401, "does not match"),
        (ack, {"signature": "sha256=abc"}, 401, "no v1= signature"),
        (b"{not json", {}, 400, "not valid JSON"),
        (b'{"event": {"id": "x"}}', {}, 400, "'event.event_type' is missing"),
        (b'{"hello": 1}', {}, 400, "'event' is missing"),
    ]:
        got, answer = await deliver(base, body, **kw)
        assert got == status and any(needle in e for e in answer["errors"]), (needle, answer)
    async with aiohttp.ClientSession() as s, s.get(base + "/api/v1/groups") as r:
        [g] = (await r.json())["groups"]
    assert "pd" not in g["state"]  # nothing changed
    # the second configured secret (a rotation under way) is accepted too
    assert (await deliver(base, envelope("triggered", key, 0), secret=OLD_SECRET))[0] == 200
    # a replay (PagerDuty retries with the same X-Webhook-Id) is applied once
    assert (await deliver(base, ack, webhook_id="w-1"))[1]["verdict"] == "applied"
    assert (await deliver(base, ack, webhook_id="w-1"))[1]["verdict"] == "duplicate"
    # a key we never sent: counted, ignored
    assert (await deliver(base, envelope("acknowledged", "not-ours", 3)))[1]["verdict"] == "foreign"
    async with aiohttp.ClientSession() as s, s.get(base + "/metrics") as r:
        metrics = await r.text()
    assert 'alert_proxy_pagerduty_webhooks_total{type="incident.acknowledged",verdict="foreign"} 1.0' in metrics
    assert 'alert_proxy_pagerduty_webhooks_total{type="-",verdict="rejected"} 7.0' in metrics


async def test_the_signature_test_vector_verifies(tmp_path, fake_pd, proxy_process):
    port = free_port()
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(write_rules(tmp_path / "r", RULES)),
                  "--upstream", fake_pd.url, "--pagerduty-webhook-secret",
                  "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK")
    await asyncio.to_thread(wait_port, port)
    body = (EXAMPLES / "go-pagerduty-signature-test-vector-body.json").read_bytes()
    sig = "v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd"
    status, answer = await deliver(f"http://127.0.0.1:{port}", body, signature=sig)
    assert status == 200 and answer["verdict"] == "ignored"  # a priority update: nothing for us


async def test_without_a_secret_the_path_refuses_everything(tmp_path, fake_pd, proxy_process):
    base, _ = await start(tmp_path, fake_pd, proxy_process, secret=False)
    status, answer = await deliver(base, envelope("acknowledged", "k", 1))
    assert status == 403 and "no secret is configured" in answer["message"]


# -- remediation -------------------------------------------------------------------------------
REMEDIATE = RULES + """
rules:
  - name: restart
    match: {alertname: Down}
    repeat_interval: 1h
    remediate:
      url: "http://127.0.0.1:%(port)d/fix?host={{ alert.labels.instance }}"
      headers: {X-Token: "${RUNDECK_TOKEN}"}
      body: '{"group": "{{ group_labels.alertname }}", "firing": {{ num_firing }}}'
      timeout: 1s
      wait: 3s
"""


class FixEndpoint:
    """The remediation endpoint: answers as told; `fix` resolves the alert at the proxy."""

    def __init__(self, mode: str) -> None:
        self.mode, self.calls, self.proxy = mode, [], ""
        self.port = free_port()

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append((request.query.get("host"), request.headers.get("X-Token"),
                           orjson.loads(await request.read())))
        if self.mode == "timeout":
            await asyncio.sleep(3)
        if self.mode == "500":
            return web.Response(status=500, text="rundeck: job failed to start")
        if self.mode == "fix":
            await fire(self.proxy, "web1", status="resolved")
        return web.json_response({"id": 17, "status": "running"})

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_post("/fix", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.runner.cleanup()


@pytest.mark.parametrize("mode,pages,outcome", [
    ("fix", 0, None), ("500", 1, "failed"), ("timeout", 1, "timeout"), ("ok", 1, "not fixed")])
async def test_remediation(tmp_path, fake_pd, proxy_process, mode, pages, outcome):
    async with FixEndpoint(mode) as endpoint:
        base, _ = await start(tmp_path, fake_pd, proxy_process, REMEDIATE % {"port": endpoint.port})
        endpoint.proxy = base
        await fire(base, "web1")
        await asyncio.sleep(6)  # group_wait, the call, the wait
        assert len(endpoint.calls) == 1
        assert endpoint.calls[0] == ("web1", "rd-token-xyz", {"group": "Down", "firing": 1})
        assert len(triggers(fake_pd)) == pages
        if outcome:
            d = triggers(fake_pd)[0]["payload"]["custom_details"]["remediation"]
            assert d["outcome"] == outcome
            if mode == "500":
                assert d["http_status"] == 500 and d["answer"] == "rundeck: job failed to start"
    async with aiohttp.ClientSession() as s, s.get(base + "/metrics") as r:
        metrics = await r.text()
    want = {"fix": "ok", "ok": "ok", "500": "failed", "timeout": "timeout"}[mode]
    assert f'alert_proxy_remediations_total{{outcome="{want}"}} 1.0' in metrics
    log = (Path(tmp_path) / "proxy.log").read_text()
    assert "rd-token-xyz" not in log
    lines = [orjson.loads(line) for line in log.splitlines() if line.startswith("{")]
    flushed = [x for x in lines if x["msg"] == "group flushed" and x["actions"] == ["trigger"]]
    delivered = [x for x in lines if x["msg"] == "event delivered" and x["action"] == "trigger"]
    keys = [t["dedup_key"] for t in triggers(fake_pd)]  # each page has its JSON lines
    assert [x["dedup_key"] for x in flushed] == [x["dedup_key"] for x in delivered] == keys
    assert {(x["level"], x["logger"]) for x in flushed} <= {("info", "alert_proxy")}
    assert {(x["level"], x["logger"]) for x in delivered} <= {("info", "alert_proxy.sender")}


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_kill_9_during_wait_still_one_call_and_one_page(tmp_path, fake_pd, proxy_process,
                                                              own_redis, kind):
    store = f"sqlite://{tmp_path}/state.db" if kind == "sqlite" else own_redis.url
    port = free_port()
    async with FixEndpoint("ok") as endpoint:
        rules = REMEDIATE.replace("wait: 3s", "wait: 6s") % {"port": endpoint.port}
        base, first = await start(tmp_path, fake_pd, proxy_process, rules, store, "first", port)
        await fire(base, "web1")
        await wait_for(lambda: len(endpoint.calls) == 1, timeout=10)
        await asyncio.sleep(1)  # the outcome is recorded; the page waits
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait()
        assert triggers(fake_pd) == []
        await start(tmp_path, fake_pd, proxy_process, rules, store, "second", port)
        await wait_for(lambda: len(triggers(fake_pd)) == 1, timeout=15)
        await asyncio.sleep(2)
        assert len(endpoint.calls) == 1 and len(triggers(fake_pd)) == 1
        d = triggers(fake_pd)[0]["payload"]["custom_details"]["remediation"]
        assert d["outcome"] == "not fixed" and d["http_status"] == 200


INJECT = RULES + """
rules:
  - name: as-a-string
    match: {alertname: ByString}
    group_by: [service]
    remediate:
      url: "http://127.0.0.1:%(port)d/fix/{{ group_labels.service }}?svc={{ group_labels.service }}"
      body: '{"options": {"service": "{{ group_labels.service }}"}}'
      headers: {X-Service: "{{ group_labels.service }}"}
      wait: 1m
  - name: as-a-mapping
    match: {alertname: ByMapping}
    group_by: [service]
    remediate:
      url: "http://127.0.0.1:%(port)d/fix/{{ group_labels.service }}"
      body: {options: {service: "{{ group_labels.service }}", firing: "{{ num_firing }}"}}
      wait: 1m
"""


async def test_remediation_templates_escape_for_where_they_go(tmp_path, fake_pd, proxy_process):
    """Issue 28: a label `../../etc/passwd` in a URL template made the proxy call
    /etc/passwd on the target; the README's body template turned a label into extra JSON
    keys. Each value is now URL-encoded in the URL, JSON-escaped in a string body, and a
    body given as a YAML mapping is serialised."""
    seen: list[tuple[str, dict[str, Any], str]] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.Response:
        # before routing: aiohttp's own router answers /fix/%2E%2E with 404 (it reads `..`)
        seen.append((request.raw_path, orjson.loads(await request.read()),
                     request.headers.get("X-Service", "")))
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[record])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        base, _ = await start(tmp_path, fake_pd, proxy_process, INJECT % {"port": port})
        climb, inject = "../../etc/passwd", 'svc"}, "injected": "yes'
        body = {"version": "4", "alerts": [
            {"status": "firing", "labels": {"alertname": name, "service": svc}}
            for name in ("ByString", "ByMapping") for svc in (climb, inject, "..", "a\r\nX-Evil: 1")]}
        async with aiohttp.ClientSession() as s, s.post(base + "/v1/alertmanager", json=body) as r:
            assert r.status == 200
        await wait_for(lambda: len(seen) == 8, timeout=10)
    finally:
        await runner.cleanup()
    paths = sorted(p for p, _, _ in seen)
    assert all(p.startswith("/fix/") for p in paths), paths  # nothing climbed out of /fix/
    assert "/fix/..%2F..%2Fetc%2Fpasswd?svc=..%2F..%2Fetc%2Fpasswd" in paths
    assert "/fix/..%2F..%2Fetc%2Fpasswd" in paths and "/fix/%2E%2E" in paths
    for _, sent, header in seen:
        assert set(sent) == {"options"}, sent  # no key injected
        assert sent["options"]["service"] in (climb, inject, "..", "a\r\nX-Evil: 1")
        assert "\r" not in header and "\n" not in header
    assert {tuple(sorted(sent["options"])) for _, sent, _ in seen} == {("service",), ("firing", "service")}
