"""Generic webhooks through the real CLI: the built-in mappings (Grafana, Uptime Kuma,
CloudWatch through Amazon SNS) with captured payloads (tests/fixtures/webhooks/README.md),
firing then resolved, out to the fake PagerDuty; SNS's handshake and signatures against a
fake SNS over HTTPS; bad input answered 4xx naming the field, and nothing taken from it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import FAST_RULES, ROOT, wait_for, write_rules
from tests.support.fakesns import TOPIC, FakeSNS
from tests.support.net import free_port, wait_port

PAYLOADS = ROOT / "tests" / "fixtures" / "webhooks"

RULES = FAST_RULES + """sources:
  - {name: grafana, builtin: grafana}
  - {name: kuma, builtin: uptime-kuma}
  - name: aws
    builtin: cloudwatch-sns
    sns: {topics: ["arn:aws:sns:us-west-2:123456789012:*"], cert_hosts: [127.0.0.1], ca_file: %s}
"""


def payload(name: str) -> bytes:
    return (PAYLOADS / f"{name}.json").read_bytes()


@pytest.fixture
async def sns(tmp_path):
    fake = FakeSNS(tmp_path)
    await fake.start()
    yield fake
    await fake.stop()


async def start(tmp_path, fake_pd, proxy_process, sns: FakeSNS, *extra: str) -> str:
    port = free_port()
    rules = write_rules(tmp_path / "rules", RULES % sns.ca_file)
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--upstream", fake_pd.url,
                  *extra)
    await asyncio.to_thread(wait_port, port)
    return f"http://127.0.0.1:{port}"


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.post(
            url, data=body, headers=headers or {"Content-Type": "application/json"}) as r:
        return r.status, await r.json()


def sent(pd, action: str) -> list[dict[str, Any]]:
    return [r.body for r in pd.accepted() if r.action == action]


async def test_grafana_firing_then_resolved(tmp_path, fake_pd, proxy_process, sns):
    base = await start(tmp_path, fake_pd, proxy_process, sns)
    assert await post(base + "/v1/webhook/grafana", payload("grafana-firing")) == \
        (200, {"status": "success", "alerts": 2})
    await wait_for(lambda: len(sent(fake_pd, "trigger")) == 2)
    by_summary = {t["payload"]["summary"]: t for t in sent(fake_pd, "trigger")}
    mem = by_summary["This alert was triggered for zone us-1"]
    assert [link["text"] for link in mem["links"]] == ["Grafana alert rule", "Silence", "Runbook"]
    assert mem["links"][0]["href"] == "https://play.grafana.org/alerting/1afz29v7z/edit"
    [alert] = mem["payload"]["custom_details"]["alerts"]
    assert alert["labels"] == {"alertname": "High memory usage", "team": "blue", "zone": "us-1"}
    assert await post(base + "/v1/webhook/grafana", payload("grafana-resolved")) == \
        (200, {"status": "success", "alerts": 2})
    await wait_for(lambda: len(sent(fake_pd, "resolve")) == 2)
    assert {r["dedup_key"] for r in sent(fake_pd, "resolve")} == \
        {t["dedup_key"] for t in sent(fake_pd, "trigger")}
    assert fake_pd.violations == []


async def test_uptime_kuma_down_test_message_then_up(tmp_path, fake_pd, proxy_process, sns):
    base = await start(tmp_path, fake_pd, proxy_process, sns)
    assert await post(base + "/v1/webhook/kuma", payload("uptime-kuma-down")) == \
        (200, {"status": "success", "alerts": 1})
    await wait_for(lambda: len(sent(fake_pd, "trigger")) == 1)
    [t] = sent(fake_pd, "trigger")
    assert t["payload"]["summary"] == "[Checkout API] [🔴 Down] getaddrinfo ENOTFOUND checkout.example.com"
    [alert] = t["payload"]["custom_details"]["alerts"]
    assert alert["labels"] == {"alertname": "Checkout API", "monitor_type": "http", "team": "payments",
                               "public": "true"}
    # the Test button of Kuma's notification dialog: taken, no alert in it
    assert await post(base + "/v1/webhook/kuma", payload("uptime-kuma-test")) == \
        (200, {"status": "success", "alerts": 0})
    assert await post(base + "/v1/webhook/kuma", payload("uptime-kuma-up")) == \
        (200, {"status": "success", "alerts": 1})
    await wait_for(lambda: len(sent(fake_pd, "resolve")) == 1)
    assert sent(fake_pd, "resolve")[0]["dedup_key"] == t["dedup_key"]
    assert fake_pd.violations == []


async def test_cloudwatch_through_sns_confirm_alarm_ok(tmp_path, fake_pd, proxy_process, sns):
    base = await start(tmp_path, fake_pd, proxy_process, sns)
    url = base + "/v1/webhook/aws"
    confirm = sns.message("SubscriptionConfirmation", f"You have chosen to subscribe to the topic "
                          f"{TOPIC}.\nTo confirm the subscription, visit the SubscribeURL included "
                          "in this message.")
    assert await post(url, sns.body(confirm), sns.headers(confirm)) == \
        (200, {"status": "success", "type": "SubscriptionConfirmation", "confirmed": True})
    assert sns.confirmed == [confirm["Token"]]
    alarm = sns.message("Notification", payload("cloudwatch-alarm").decode(), version="2",
                        subject='ALARM: "EXAMPLE" in US West (Oregon)')
    assert await post(url, sns.body(alarm), sns.headers(alarm)) == (200, {"status": "success", "alerts": 1})
    await wait_for(lambda: len(sent(fake_pd, "trigger")) == 1)
    [t] = sent(fake_pd, "trigger")
    assert t["payload"]["summary"].startswith("EXAMPLE: Threshold Crossed: 1 out of the last 1 datapoints")
    [alert] = t["payload"]["custom_details"]["alerts"]
    assert alert["labels"] == {"InstanceId": "TestInstance", "alertname": "EXAMPLE", "region": "EXAMPLE",
                               "account": "123456789012", "namespace": "AWS/EC2", "metric": "NetworkOut"}
    ok = sns.message("Notification", payload("cloudwatch-ok").decode(), version="1",
                     subject='OK: "EXAMPLE" in US West (Oregon)')
    assert await post(url, sns.body(ok), sns.headers(ok)) == (200, {"status": "success", "alerts": 1})
    await wait_for(lambda: len(sent(fake_pd, "resolve")) == 1)
    assert sent(fake_pd, "resolve")[0]["dedup_key"] == t["dedup_key"]
    unsubscribed = sns.message("UnsubscribeConfirmation", "You have unsubscribed")
    assert (await post(url, sns.body(unsubscribed), sns.headers(unsubscribed)))[0] == 200
    assert sns.cert_fetches == 1  # the certificate is kept, not fetched per message
    assert fake_pd.violations == []


async def test_bad_input_is_refused_naming_the_problem_and_nothing_is_taken(tmp_path, fake_pd,
                                                                              proxy_process, sns):
    base = await start(tmp_path, fake_pd, proxy_process, sns, "--auth", "webhook:grafana=bearer:gr-token")
    auth = {"Content-Type": "application/json", "Authorization": "Bearer gr-token"}
    grafana = orjson.loads(payload("grafana-firing"))

    def with_(change: Any) -> bytes:
        body = orjson.loads(payload("grafana-firing"))
        change(body)
        return orjson.dumps(body)

    cases: list[tuple[str, bytes, dict[str, str] | None, int, str]] = [
        ("nope", b"{}", None, 404, "no webhook source is named 'nope'"),
        ("grafana", orjson.dumps(grafana), None, 401, "missing or wrong credentials for webhook:grafana"),
        ("grafana", b"{", auth, 400, "body is not valid JSON"),
        ("grafana", with_(lambda b: b.pop("alerts")), auth, 400, "'alerts' is missing"),
        ("grafana", with_(lambda b: b["alerts"][1].pop("status")), auth, 400, "'alerts[1].status' is missing"),
        ("grafana", with_(lambda b: b["alerts"][0].update(status="pending")), auth, 400,
         "'alerts[0]': the mapping's status gave 'pending' (it must give firing or resolved)"),
        ("grafana", with_(lambda b: b["alerts"][0].update(labels="x")), auth, 400,
         "'alerts[0].labels' must be an object"),
        ("grafana", b"[1, 2]", auth, 400, "'alerts' is missing"),
        ("kuma", b"{", None, 400, "body is not valid JSON"),
        ("kuma", orjson.dumps({"heartbeat": {"status": 0}, "monitor": {"id": 1}, "msg": "x"}), None, 400,
         "'monitor.name' is missing"),
    ]
    for name, body, headers, status, needle in cases:
        got, answer = await post(f"{base}/v1/webhook/{name}", body, headers)
        assert got == status and any(needle in e for e in answer["errors"]), (needle, got, answer)

    url = base + "/v1/webhook/aws"
    alarm = payload("cloudwatch-alarm").decode()
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tampered = sns.message("Notification", alarm)
    tampered["Message"] = tampered["Message"].replace("ALARM", "OK")
    other_host = sns.message("Notification", alarm, cert_url="https://sns.evil.example.com/x.pem")
    sns_cases: list[tuple[dict[str, Any], int, str]] = [
        (sns.message("Notification", alarm, key=stranger), 401, "signature does not verify"),
        (tampered, 401, "signature does not verify"),
        (sns.message("Notification", alarm, topic="arn:aws:sns:us-west-2:999999999999:theirs"), 403,
         "is not one this source takes"),
        (other_host, 403, "'SigningCertURL' is not an https URL on an allowed host"),
        (sns.message("Notification", alarm, timestamp=datetime.now(UTC) - timedelta(hours=2)), 400,
         "refused as a replay"),
        (sns.message("Notification", "plain text, not JSON"), 400, "'Message' is not JSON"),
        ({**sns.message("Notification", alarm), "Type": "Surprise"}, 400, "is not an SNS message type"),
        ({k: v for k, v in sns.message("Notification", alarm).items() if k != "Signature"}, 400,
         "'Signature' is missing"),
    ]
    for env, status, needle in sns_cases:
        headers = sns.headers({**env, "Type": "Notification"})
        got, answer = await post(url, sns.body(env), headers)
        assert got == status and any(needle in e for e in answer["errors"]), (needle, got, answer)
    await asyncio.sleep(1.0)  # past group_wait: had anything been taken, it would be sent
    assert fake_pd.accepted() == [] and fake_pd.violations == []
    # and the same sources take good input afterwards
    assert (await post(base + "/v1/webhook/grafana", orjson.dumps(grafana), auth))[0] == 200
    await wait_for(lambda: len(sent(fake_pd, "trigger")) == 2)


def test_check_reports_bad_sources_with_file_and_line(tmp_path):
    rules = write_rules(tmp_path, """
rules: [{name: all}]
sources:
  - {name: grafana, builtin: grafna}
  - name: aws
    builtin: cloudwatch-sns
  - name: ci
    items: jobs
    status: "{{ job.state }}"
  - name: Bad Name
    status: firing
""")
    out = subprocess.run([sys.executable, "-m", "proxy", "check", str(rules)], check=False, capture_output=True,
                         text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 1
    f = rules / "rules.yml"
    assert out.stderr.splitlines() == [
        f"{f}:4: source 'grafana': builtin: 'grafna' is not a built-in mapping (known: grafana, "
        "cloudwatch-sns, uptime-kuma)",
        f"{f}:5: source 'aws': sns: {{topics: [...]}} is required: the TopicArns to take",
        f"{f}:9: source 'ci': status: template names 'job', which is not defined here (known: body, "
        "item, sns)",
        f"{f}:10: source 'Bad Name': name: every source needs a name of lowercase letters, digits, - "
        "and _ (it is the path /v1/webhook/NAME)",
    ]
