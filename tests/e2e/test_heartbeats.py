"""Heartbeats the way ops runs them: a Watchdog stream (as kube-prometheus sends) that stops
pages once within every + grace (+ 5 s) and resolves when it comes back, also across a
restart; two replicas on one Redis send one page; a cron job's POST /v1/heartbeat/<name>."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import pytest

from tests.conftest import wait_for, write_rules
from tests.support.net import free_port, wait_port

pytestmark = pytest.mark.e2e

RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname]
  group_wait: 1s
heartbeats:
  - name: prometheus-prod
    match: {alertname: Watchdog, prometheus: prod}
    every: 2s
    grace: 1s
    summary: "no Watchdog from {{ name }} for {{ silent_for }}"
  - name: backup
    every: 3s
    severity: warning
"""


def watchdog() -> dict[str, object]:
    return {"status": "firing", "labels": {"alertname": "Watchdog", "prometheus": "prod"},
            "annotations": {"summary": "always firing"}}


async def post(url: str, path: str, body: object | None = None) -> int:
    async with aiohttp.ClientSession() as s, s.post(url + path, json=body) as r:
        return r.status


def sends(pd, name: str) -> list[str]:
    return [r.action for r in pd.accepted() if r.dedup_key == f"alert-proxy/heartbeat/{name}"]


async def feed(url: str, seconds: float) -> None:
    """Watchdog every 0.5 s, as a steady Alertmanager would (shorter than every)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await post(url, "/v1/alertmanager", {"version": "4", "status": "firing",
                                                    "alerts": [watchdog()]}) == 200
        await asyncio.sleep(0.5)


async def test_a_watchdog_that_stops_pages_once_and_resolves_when_it_comes_back(
        tmp_path, fake_pd, proxy_process):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    rules = write_rules(tmp_path / "rules", RULES)
    args = ("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--store",
            f"sqlite://{tmp_path}/state.db", "--upstream", fake_pd.url)
    p = proxy_process(*args, name="proxy")
    await asyncio.to_thread(wait_port, port)
    await feed(url, 4.0)
    assert sends(fake_pd, "prometheus-prod") == []  # the Watchdog never pages itself
    assert not [r for r in fake_pd.accepted() if "Watchdog" in str(r.body)]

    stopped = time.monotonic()
    await wait_for(lambda: sends(fake_pd, "prometheus-prod") == ["trigger"], timeout=3 + 5)
    assert time.monotonic() - stopped >= 2.5  # not before every + grace
    [page] = [r for r in fake_pd.accepted() if r.dedup_key == "alert-proxy/heartbeat/prometheus-prod"]
    assert page.body["payload"]["summary"].startswith("no Watchdog from prometheus-prod for ")
    assert page.body["payload"]["severity"] == "critical"
    await asyncio.sleep(2)
    assert sends(fake_pd, "prometheus-prod") == ["trigger"]  # once

    await feed(url, 1.0)
    await wait_for(lambda: sends(fake_pd, "prometheus-prod") == ["trigger", "resolve"])

    p.stop()  # a restart while it is silent: the state is in the file
    await asyncio.sleep(3.5)
    proxy_process(*args, name="proxy-again")
    await asyncio.to_thread(wait_port, port)
    await wait_for(lambda: sends(fake_pd, "prometheus-prod") == ["trigger", "resolve", "trigger"],
                   timeout=5)
    # the backup heartbeat never arrived since the first start: it paged too, once
    assert sends(fake_pd, "backup").count("trigger") == 1


async def test_two_replicas_on_one_redis_send_one_page_and_a_cron_job_feeds_its_heartbeat(
        tmp_path, fake_pd, proxy_process, redis_server):
    rules = write_rules(tmp_path / "rules", RULES)
    prefix = f"hb-{uuid.uuid4().hex[:8]}"
    ports = [free_port(), free_port()]
    for i, port in enumerate(ports):
        proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--store",
                      redis_server.url, "--store-prefix", prefix, "--upstream", fake_pd.url,
                      name=f"replica{i}")
    for port in ports:
        await asyncio.to_thread(wait_port, port)
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    for _ in range(10):  # the cron job reaches either replica
        for u in urls:
            assert await post(u, "/v1/heartbeat/backup") == 200
        await asyncio.sleep(0.25)
    assert sends(fake_pd, "backup") == []
    assert await post(urls[0], "/v1/heartbeat/nope") == 404
    await wait_for(lambda: sends(fake_pd, "prometheus-prod") == ["trigger"], timeout=3 + 5)
    await wait_for(lambda: sends(fake_pd, "backup") == ["trigger"], timeout=3 + 5)
    await asyncio.sleep(2)
    assert sends(fake_pd, "prometheus-prod") == ["trigger"] and sends(fake_pd, "backup") == ["trigger"]
    assert await post(urls[1], "/v1/heartbeat/backup") == 200
    await wait_for(lambda: sends(fake_pd, "backup") == ["trigger", "resolve"])
