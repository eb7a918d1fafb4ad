"""Production hardening, each item as a user or an attacker would meet it: compressed and
lying bodies, what PagerDuty refuses, YAML that Alertmanager reads differently, templates
naming nothing, secrets in errors, admin paths from the network, http and https at once,
a certificate replaced, too many groups, bad command lines."""

from __future__ import annotations

import asyncio
import gzip
import os
import socket
import ssl
import subprocess
import sys
import time
import zlib

import aiohttp
import orjson
import pytest
import trustme

from tests.conftest import FAST_RULES, KEY, ROOT, wait_for, write_rules
from tests.support.net import free_port, wait_port

H = {"Content-Type": "application/json"}
AM = orjson.dumps({"version": "4", "alerts": [{"status": "firing", "labels": {"alertname": "A"}}]})


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "proxy", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=60, check=False)


# -- bodies -------------------------------------------------------------------------------
@pytest.mark.parametrize("encoding,body,status,needle", [
    ("gzip", b"this is not gzip", 400, "not valid gzip data"),
    ("deflate", b"\x00\x01garbage", 400, "not valid deflate data"),
    ("gzip", gzip.compress(AM)[:-6], 400, "not complete gzip data"),
    ("gzip", gzip.compress(b" " * 50_000_000), 413, "larger than 512000 bytes once decompressed"),
    ("br", b"xx", 415, "Content-Encoding 'br' is not supported"),
])
async def test_compressed_bodies_that_do_not_decode_are_4xx(make_proxy, fake_pd, encoding, body, status, needle):
    client = await make_proxy(fake_pd.url)
    for path in ("/v1/alertmanager", "/v1/datadog", "/v2/enqueue", "/v2/change/enqueue"):
        r = await client.post(path, data=body, headers={**H, "Content-Encoding": encoding})
        assert r.status == status, (path, await r.text())
        data = await r.json()
        assert any(needle in e for e in data["errors"]), data
    assert len(gzip.compress(b" " * 50_000_000)) < 100_000  # the bomb: tiny on the wire


async def test_gzip_and_deflate_bodies_are_accepted(make_proxy, fake_pd):
    client = await make_proxy(fake_pd.url)
    for enc, body in (("gzip", gzip.compress(AM)), ("deflate", zlib.compress(AM)),
                      ("deflate", zlib.compress(AM)[2:-4])):  # raw deflate, as some clients send
        r = await client.post("/v1/alertmanager", data=body, headers={**H, "Content-Encoding": enc})
        assert r.status == 200, await r.text()


async def test_a_body_shorter_than_its_content_length_is_408_in_time(tmp_path, fake_pd, proxy_process):
    port = free_port()
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(write_rules(tmp_path / "r", FAST_RULES)),
                  "--upstream", fake_pd.url, "--body-timeout", "1")
    await asyncio.to_thread(wait_port, port)

    def lie() -> tuple[float, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /v1/alertmanager HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 1000\r\n\r\n{\"alerts\": [")
            t = time.monotonic()
            answer = s.recv(4096)
            return time.monotonic() - t, answer

    took, answer = await asyncio.to_thread(lie)
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
    assert took < 2.0


async def test_datadog_dates_no_clock_can_read_are_400(make_proxy, fake_pd):
    client = await make_proxy(fake_pd.url)
    for date in (10**30, -(10**20), "12x", True, "9" * 40):
        r = await client.post("/v1/datadog", json={"title": "[Triggered] x", "date": date})
        assert r.status == 400 and "'date'" in (await r.json())["message"], date


@pytest.mark.parametrize("payload,error", [
    ({"summary": "s", "source": 42, "severity": "info"}, "'payload.source' is invalid (should be a string)"),
    ({"summary": "s", "source": "h", "severity": "info", "timestamp": "2026-11-23"},
     "'payload.timestamp' is invalid (should be an ISO 8601 date-time)"),
    ({"summary": "s", "source": "h", "severity": "info", "timestamp": "yesterday 10:00"},
     "'payload.timestamp' is invalid (should be an ISO 8601 date-time)"),
    ({"summary": "s", "source": "h", "severity": "info", "component": ["web"]},
     "'payload.component' is invalid (should be a string)"),
    ({"summary": "s", "source": "h", "severity": "info", "custom_details": "text"},
     "'payload.custom_details' is invalid (should be an object)"),
])
async def test_drop_in_refuses_at_once_what_pagerduty_refuses(make_proxy, fake_pd, payload, error):
    client = await make_proxy(fake_pd.url)
    r = await client.post("/v2/enqueue", json={"routing_key": KEY, "event_action": "trigger",
                                               "payload": payload})
    assert r.status == 400
    assert await r.json() == {"status": "invalid event", "message": "Event object is invalid",
                              "errors": [error]}


async def test_drop_in_refuses_bad_links_images_and_change_events(make_proxy, fake_pd):
    client = await make_proxy(fake_pd.url)
    ok = {"routing_key": KEY, "event_action": "trigger",
          "payload": {"summary": "s", "source": "h", "severity": "info",
                      "timestamp": "2015-07-17T08:42:58.315+0000"}}  # PagerDuty's own example form
    assert (await client.post("/v2/enqueue", json=ok)).status == 202
    for extra, error in (({"images": [{"src": "http://x/a.png"}]}, "'images[0].src' is invalid"),
                         ({"links": [{"href": "https://x", "text": 5}]}, "'links[0].text' is invalid")):
        r = await client.post("/v2/enqueue", json={**ok, **extra})
        assert r.status == 400 and any(error in e for e in (await r.json())["errors"])
    r = await client.post("/v2/change/enqueue", json={"routing_key": KEY, "payload": {
        "summary": "deploy", "source": 7}})
    assert r.status == 400 and (await r.json())["errors"] == ["'payload.source' is invalid (should be a string)"]
    await asyncio.sleep(0.5)
    assert fake_pd.violations == []  # nothing PagerDuty would refuse was ever forwarded


# -- rules --------------------------------------------------------------------------------
def test_yaml_values_are_read_as_alertmanager_reads_them(tmp_path):
    from proxy.model import Alert
    from proxy.rules import RuleSet, load_rules

    write_rules(tmp_path, FAST_RULES + """
rules:
  - name: norway
    match: {country: NO, port: 010, enabled: true}
    severity: critical
""")
    rs = RuleSet(load_rules([str(tmp_path)]))
    [m1, m2, m3] = rs.rules[0].matchers
    assert (m1.value, m2.value, m3.value) == ("NO", "010", "true")
    hit = Alert("f", "firing", {"country": "NO", "port": "010", "enabled": "true"}, "alertmanager")
    miss = Alert("f", "firing", {"country": "False", "port": "8", "enabled": "True"}, "alertmanager")
    assert rs.place(hit)[0][0].rule.name == "norway"
    assert rs.place(miss)[0][0].rule.name == "defaults"


def test_check_and_test_catch_a_template_naming_nothing(tmp_path):
    write_rules(tmp_path, FAST_RULES + """
rules:
  - name: typo
    summary: "{{ lables.service }} is down"
""")
    r = cli("check", str(tmp_path), env={"PD_ROUTING_KEY": KEY})
    assert r.returncode == 1
    assert "summary: template names 'lables', which is not defined here (known: alert, alerts" in r.stderr
    (tmp_path / "broken.test.yml").write_text(f"""
rule_files: [ok.yml]
env: {{PD_ROUTING_KEY: {KEY}}}
tests:
  - name: a template that fails while rendering
    until: 1m
    input: [{{at: 0s, alerts: [{{labels: {{alertname: X}}}}]}}]
    expect: [{{event_action: trigger}}]
""")
    (tmp_path / "rules.yml").unlink()
    (tmp_path / "ok.yml").write_text(FAST_RULES + '  summary: "{{ num_firing / 0 }} down"\n')
    r = cli("test", str(tmp_path / "broken.test.yml"))
    assert r.returncode == 1 and "template error:" in r.stdout, r.stdout


async def test_a_reload_error_never_shows_the_rejected_key(tmp_path, fake_pd, proxy_process):
    secret = "SECRETKEY" + "x" * 22  # 31 characters: rejected
    rules = write_rules(tmp_path / "r", FAST_RULES)
    port = free_port()
    p = proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--upstream", fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    write_rules(rules, FAST_RULES.replace("${PD_ROUTING_KEY}", secret))
    async with aiohttp.ClientSession() as s, s.post(f"http://127.0.0.1:{port}/-/reload") as r:
        answer = await r.text()
    assert r.status == 400 and "the value given (31 characters): not a PagerDuty routing key" in answer
    p.stop()
    assert secret[:8] not in answer and secret[:8] not in p.log.read_text()
    r = cli("check", str(rules))
    assert r.returncode == 1 and secret[:8] not in r.stderr + r.stdout


def test_check_with_placeholders_runs_without_the_keys():
    env = {k: v for k, v in os.environ.items() if k not in ("PD_ROUTING_KEY", "PD_DB_KEY")}
    r = subprocess.run([sys.executable, "-m", "proxy", "check", "--placeholders", "rules/"],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "placeholders for PD_DB_KEY, PD_ROUTING_KEY" in r.stdout


# -- the command line ---------------------------------------------------------------------------
def test_bad_environment_values_busy_ports_and_version_without_tracebacks():
    r = cli("serve", env={"ALERT_PROXY_RATE_LIMIT": "abc"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "'abc' is not a whole number of at least 2 (from --rate-limit or ALERT_PROXY_RATE_LIMIT)" in r.stderr
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("serve", "--listen", f"127.0.0.1:{port}", "--rules", "rules/", "--store", "memory://",
                env={"PD_ROUTING_KEY": KEY, "PD_DB_KEY": KEY})
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert f"--listen 127.0.0.1:{port}: " in r.stderr and "address already in use" in r.stderr
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("alert-proxy 0.")
    r = cli("serve", "--help")
    assert "(default: 120)" in r.stdout and "ALERT_PROXY_RATE_LIMIT" in r.stdout


# -- safe defaults ------------------------------------------------------------------------------
def _outside_address() -> str | None:
    """An address of this machine that is not loopback (a client from the network)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


async def test_admin_paths_answer_loopback_only_unless_auth_is_given(tmp_path, fake_pd, proxy_process):
    addr = _outside_address()
    if addr is None:
        pytest.skip("this machine has no address but loopback")
    port = free_port()
    rules = write_rules(tmp_path / "r", FAST_RULES)
    proxy_process("--listen", f"0.0.0.0:{port}", "--rules", str(rules), "--upstream", fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    async with aiohttp.ClientSession() as s:
        for path in ("/api/v1/groups", "/api/v1/outbox", "/api/v1/stats", "/", "/groups"):
            async with s.get(f"http://{addr}:{port}{path}") as r:
                assert r.status == 403 and "loopback clients only" in (await r.json())["message"]
            async with s.get(f"http://127.0.0.1:{port}{path}") as r:
                assert r.status == 200
        async with s.post(f"http://{addr}:{port}/-/reload") as r:
            assert r.status == 403
        async with s.post(f"http://{addr}:{port}/v1/alertmanager", data=AM, headers=H) as r:
            assert r.status == 200  # senders are not admin
        async with s.get(f"http://{addr}:{port}/healthz") as r:
            assert r.status == 200
    port2 = free_port()
    proxy_process("--listen", f"0.0.0.0:{port2}", "--rules", str(rules), "--upstream", fake_pd.url,
                  "--auth", "admin=bearer:${ADMIN_TOKEN}", env={"ADMIN_TOKEN": "t0ken"}, name="auth")
    await asyncio.to_thread(wait_port, port2)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://{addr}:{port2}/api/v1/groups") as r:
            assert r.status == 401
        async with s.get(f"http://{addr}:{port2}/api/v1/groups",
                         headers={"Authorization": "Bearer t0ken"}) as r:
            assert r.status == 200


async def test_http_and_https_at_once_and_a_renewed_certificate(tmp_path, fake_pd, proxy_process):
    ca = trustme.CA()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"

    def issue(name: str) -> None:
        c = ca.issue_cert("127.0.0.1", common_name=name)
        c.private_key_and_cert_chain_pem.write_to_path(str(cert))
        c.private_key_pem.write_to_path(str(key))

    issue("first")
    http_port, https_port = free_port(), free_port()
    proxy_process("--listen", f"127.0.0.1:{http_port}", "--listen-tls", f"127.0.0.1:{https_port}",
                  "--tls-cert", str(cert), "--tls-key", str(key), "--rules",
                  str(write_rules(tmp_path / "r", FAST_RULES)), "--upstream", fake_pd.url)
    await asyncio.to_thread(wait_port, http_port)
    await asyncio.to_thread(wait_port, https_port)
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{http_port}/v1/alertmanager", data=AM, headers=H) as r:
            assert r.status == 200  # Alertmanager over http
        async with s.post(f"https://127.0.0.1:{https_port}/v2/enqueue", ssl=ctx, json={
                "routing_key": KEY, "event_action": "trigger",
                "payload": {"summary": "s", "source": "h", "severity": "info"}}) as r:
            assert r.status == 202  # an https-only Events v2 client

    def subject() -> str:
        with socket.create_connection(("127.0.0.1", https_port)) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return str(dict(x[0] for x in tls.getpeercert()["subject"])["commonName"])

    assert await asyncio.to_thread(subject) == "first"
    await asyncio.sleep(1.1)
    issue("renewed")
    for _ in range(100):
        if await asyncio.to_thread(subject) == "renewed":
            break
        await asyncio.sleep(0.1)
    assert await asyncio.to_thread(subject) == "renewed"  # no restart


async def test_max_groups_refuses_new_groups_with_503_and_keeps_serving(tmp_path, fake_pd, proxy_process):
    port = free_port()
    rules = FAST_RULES.replace("[alertname]", "[alertname, instance]")
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(write_rules(tmp_path / "r", rules)),
                  "--upstream", fake_pd.url, "--max-groups", "10")
    await asyncio.to_thread(wait_port, port)
    url = f"http://127.0.0.1:{port}/v1/alertmanager"

    def body(*instances: int) -> bytes:
        return orjson.dumps({"alerts": [{"status": "firing", "labels": {"alertname": "U", "instance": f"i{i}"}}
                                        for i in instances]})

    async with aiohttp.ClientSession(headers=H) as s:
        async with s.post(url, data=body(*range(10))) as r:
            assert r.status == 200
        async with s.post(url, data=body(3, 11)) as r:
            answer = await r.json()
            assert r.status == 503 and "10 open groups, its --max-groups" in answer["message"]
        async with s.post(url, data=body(3, 4)) as r:
            assert r.status == 200  # alerts of open groups are still taken


async def test_dry_run_is_counted_as_dry_run_and_counters_start_at_zero(make_proxy, fake_pd):
    client = await make_proxy(fake_pd.url, dry_run=True)
    metrics = await (await client.get("/metrics")).text()
    for series in ('alert_proxy_alerts_suppressed_total{reason="flapping"} 0.0',
                   'alert_proxy_events_sent_total{action="trigger",outcome="rate_limited"} 0.0',
                   'alert_proxy_requests_rejected_total{source="alertmanager",status="503"} 0.0',
                   'alert_proxy_remediations_total{outcome="failed"} 0.0'):
        assert series in metrics, series
    assert "alert_proxy_build_info{" in metrics
    assert (await client.post("/v1/alertmanager", data=AM, headers=H)).status == 200
    await wait_for(lambda: client.proxy.metrics.registry.get_sample_value(
        "alert_proxy_events_sent_total", {"action": "trigger", "outcome": "dry_run"}) == 1.0)
    assert client.proxy.metrics.registry.get_sample_value(
        "alert_proxy_events_sent_total", {"action": "trigger", "outcome": "success"}) == 0.0
    assert fake_pd.received == []
