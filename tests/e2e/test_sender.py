"""The sender's decision for each class of PagerDuty answer, over real HTTP."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from proxy.sender import classify
from tests.conftest import KEY, wait_for

EVENT = {"routing_key": KEY, "event_action": "trigger", "dedup_key": "d1",
         "payload": {"summary": "disk full", "source": "db1", "severity": "critical"}}


@pytest.mark.parametrize("status,outcome,verdict", [
    (202, "success", "done"), (400, "invalid", "dead"), (401, "rejected", "dead"),
    (403, "rejected", "dead"), (404, "rejected", "dead"), (429, "rate_limited", "pause"),
    (500, "server_error", "retry"), (502, "server_error", "retry"), (None, "network", "retry"),
])
def test_classify(status, outcome, verdict):
    d = classify(status)
    assert (d.outcome, d.verdict) == (outcome, verdict)


async def outbox(client):
    return await (await client.get("/api/v1/outbox")).json()


def no_key_anywhere(caplog, *texts: str) -> None:
    for rec in caplog.records:
        assert KEY not in rec.getMessage() and KEY not in repr(rec.__dict__)
    for t in texts:
        assert KEY not in t


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_client_errors_go_to_dead_letters(make_proxy, fake_pd, caplog, status):
    caplog.set_level(logging.INFO, logger="alert_proxy")
    fake_pd.answer = status
    client = await make_proxy(fake_pd.url)
    assert (await client.post("/v2/enqueue", json=EVENT)).status == 202
    await wait_for(lambda: fake_pd.count(status) == 1)
    await wait_for(lambda: bool(client.proxy.store._dead))
    data = await outbox(client)
    assert data["pending"] == []
    [dead] = data["dead"]
    assert dead["action"] == "trigger" and f"HTTP {status}" in dead["last_error"]
    assert dead["key"] == "0123…cdef"
    metrics = await (await client.get("/metrics")).text()
    assert 'alert_proxy_dead_letters_total{action="trigger"} 1.0' in metrics
    assert any(r.getMessage() == "event dead-lettered" for r in caplog.records)
    await client.proxy.pipeline.flush_due()
    await asyncio.sleep(1.0)  # the sender keeps running meanwhile
    assert fake_pd.count(status) == 1  # never retried by itself
    # re-sent on request once the problem is fixed
    fake_pd.answer = None
    r = await client.post("/api/v1/deadletter/retry")
    assert (await r.json())["requeued"] == 1
    await wait_for(lambda: len(fake_pd.accepted()) == 1)
    no_key_anywhere(caplog, str(data), metrics)


async def test_429_pauses_the_key_and_honours_retry_after(make_proxy, fake_pd, caplog):
    caplog.set_level(logging.INFO, logger="alert_proxy")
    fake_pd.answer, fake_pd.retry_after = 429, "2"
    client = await make_proxy(fake_pd.url)
    assert (await client.post("/v2/enqueue", json=EVENT)).status == 202
    await wait_for(lambda: fake_pd.count(429) == 1)
    t429 = time.time()
    fake_pd.answer = None
    await wait_for(lambda: len(fake_pd.accepted()) == 1, timeout=10)
    assert fake_pd.accepted()[0].at - t429 >= 1.9  # waited as PagerDuty asked
    assert fake_pd.count(429) == 1
    metrics = await (await client.get("/metrics")).text()
    assert 'alert_proxy_rate_limited_responses_total{key="0123…cdef"} 1.0' in metrics
    no_key_anywhere(caplog, metrics)


@pytest.mark.parametrize("fault", ["500", "timeout", "drop"])
async def test_transient_failures_are_retried_until_delivered(make_proxy, fake_pd, caplog, fault):
    caplog.set_level(logging.INFO, logger="alert_proxy")
    if fault == "500":
        fake_pd.answer = 500
    elif fault == "timeout":
        fake_pd.delay = 1.0
    else:
        fake_pd.drop_rate = 1.0
    client = await make_proxy(fake_pd.url, send_timeout=0.5)
    assert (await client.post("/v2/enqueue", json=EVENT)).status == 202
    await wait_for(lambda: len(fake_pd.received) >= 2, timeout=15)  # retried
    fake_pd.answer, fake_pd.delay, fake_pd.drop_rate = None, 0.0, 0.0
    n = len(fake_pd.accepted())
    await wait_for(lambda: (len(fake_pd.accepted()) > n and not client.proxy.store._items), timeout=15)
    data = await outbox(client)
    assert data["pending"] == [] and data["dead"] == []
    metrics = await (await client.get("/metrics")).text()
    assert "alert_proxy_retries_total" in metrics
    no_key_anywhere(caplog, metrics)
