"""Single-alert requests that arrive together are accepted in one pipeline call
(proxy/together.py), and each answer is still its own: through the real CLI, over HTTP,
on each kind of store.

A request that would open a group past --max-groups is refused (503) alone: the requests
that came with it are taken, and each accepted alert is counted once."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from tests.conftest import write_rules
from tests.support.net import free_port, wait_port

RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname, instance]
  group_wait: 1h
  group_interval: 1h
  repeat_interval: 1h
"""


def _one(instance: str, fp: str) -> bytes:
    return orjson.dumps({"version": "4", "alerts": [{
        "status": "firing", "fingerprint": fp, "startsAt": "2026-12-03T10:00:00Z",
        "labels": {"alertname": "Together", "instance": instance}}]})


async def _received(s: aiohttp.ClientSession, base: str) -> float:
    async with s.get(base + "/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith('alert_proxy_alerts_received_total{source="alertmanager"}'):
                return float(line.split()[-1])
    return -1.0


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
async def test_a_refused_request_among_many_is_refused_alone(tmp_path, fake_pd, proxy_process,
                                                             redis_server, kind):
    store = {"memory": "memory://", "sqlite": f"sqlite://{tmp_path}/state.db",
             "redis": redis_server.url}[kind]
    port = free_port()
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(write_rules(tmp_path / "r", RULES)),
                  "--store", store, "--store-prefix", f"together-{port}",
                  "--upstream", fake_pd.url, "--max-groups", "50")
    await asyncio.to_thread(wait_port, port)
    base = f"http://127.0.0.1:{port}"
    conn = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=conn, headers={"Content-Type": "application/json"}) as s:

        async def post(body: bytes) -> int:
            async with s.post(base + "/v1/alertmanager", data=body) as r:
                await r.read()
                return r.status

        first = await asyncio.gather(*(post(_one(f"i{i}", f"a{i}")) for i in range(40)))
        assert first == [200] * 40  # 40 groups open
        # together: 30 alerts of open groups, 30 that would each open a group (room for 10)
        old = [_one(f"i{i}", f"b{i}") for i in range(30)]
        new = [_one(f"n{i}", f"c{i}") for i in range(30)]
        mixed = [b for pair in zip(old, new, strict=True) for b in pair]
        answers = await asyncio.gather(*(post(b) for b in mixed))
        assert answers[0::2] == [200] * 30  # never refused for another request's group
        assert sorted(answers[1::2]) == [200] * 10 + [503] * 20
        assert await _received(s, base) == 40 + 30 + 10  # each accepted alert once, no refused one
