"""The official `pagerduty` Python client talks to the proxy over TLS as it would to PagerDuty."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pagerduty
import pytest
import trustme

from tests.conftest import FAST_RULES, KEY, wait_for, write_rules
from tests.support.net import free_port, wait_port


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[str, str, str]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    return str(ca_file), str(cert_file), str(key_file)


async def test_official_client_trigger_ack_resolve_over_tls(tmp_path, fake_pd, proxy_process, tls_files):
    ca_file, cert_file, key_file = tls_files
    port = free_port()
    rules = write_rules(tmp_path / "rules", FAST_RULES)
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--upstream", fake_pd.url,
                  "--tls-cert", cert_file, "--tls-key", key_file)
    await asyncio.to_thread(wait_port, port)
    client = pagerduty.EventsApiV2Client(KEY, base_url=f"https://127.0.0.1:{port}", verify=ssl.create_default_context(cafile=ca_file))

    def call(fn, *a, **kw):
        return asyncio.to_thread(fn, *a, **kw)

    dk = await call(client.trigger, "Checkout latency above 2s", "web-1", dedup_key="checkout-latency",
                    severity="error", custom_details={"p99_ms": 2300})
    assert dk == "checkout-latency"
    generated = await call(client.trigger, "Queue backlog", "worker-3", severity="warning")
    assert len(generated) == 32
    await wait_for(lambda: len(fake_pd.accepted()) == 2, timeout=10)
    pd_key = {r.body["payload"]["summary"]: r.dedup_key for r in fake_pd.accepted()}
    assert await call(client.acknowledge, "checkout-latency") == "checkout-latency"
    await wait_for(lambda: len(fake_pd.accepted()) == 3, timeout=10)
    ack = fake_pd.accepted()[2].body
    assert ack["event_action"] == "acknowledge"
    assert ack["dedup_key"] == pd_key["Checkout latency above 2s"]
    assert await call(client.resolve, "checkout-latency") == "checkout-latency"
    await wait_for(lambda: len(fake_pd.accepted()) == 4, timeout=10)
    res = fake_pd.accepted()[3].body
    assert res["event_action"] == "resolve" and res["dedup_key"] == pd_key["Checkout latency above 2s"]
    trig = next(r.body for r in fake_pd.accepted() if r.dedup_key == pd_key["Checkout latency above 2s"])
    assert trig["payload"]["custom_details"]["p99_ms"] == 2300
    assert trig["payload"]["source"] == "web-1"
    # PagerDuty's 400 reaches the client as PagerDuty would send it
    with pytest.raises(pagerduty.HttpError) as err:
        await call(client.send_event, "trigger", payload={"summary": "no source", "severity": "info"})
    assert err.value.response.status_code == 400
    assert "'payload.source' is missing or blank" in err.value.response.json()["errors"]
    # (client.submit() itself is broken in pagerduty 7.2.0: its event_timestamp raises)
    await call(client.send_change_event, payload={"summary": "deployed checkout v42", "source": "ci",
                                                  "timestamp": "2026-11-22T10:00:00Z"})
    await wait_for(lambda: len(fake_pd.accepted("/v2/change/enqueue")) == 1, timeout=10)
    assert fake_pd.violations == []
