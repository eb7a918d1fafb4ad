"""A shutdown that ends: SIGTERM with a large backlog, on every store, with PagerDuty up
and with PagerDuty hanging; the process exits within --shutdown-timeout, and a restart on
the durable stores delivers everything."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import wait_for, write_rules
from tests.support.net import free_port, wait_port
from tests.support.procs import alive, children
from tests.support.storm import post_batches

RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname, instance]
  group_wait: 200ms
  group_interval: 1s
  repeat_interval: 1h
"""
GROUPS = 2000
TIMEOUT = 4.0


@pytest.fixture
async def hanging_pd() -> AsyncIterator[str]:
    """A PagerDuty that accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        held.append(w)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    for w in held:
        w.close()
    server.close()


async def _start(proxy_process: Any, tmp_path: Path, port: int, store: str, upstream: str, *extra: str,
                 name: str) -> Any:
    """`alert-proxy serve` with RULES, listening when this returns."""
    p = proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(write_rules(tmp_path / "rules", RULES)),
                      "--store", store, "--upstream", upstream, *extra, name=name)
    await asyncio.to_thread(wait_port, port)
    return p


async def _sigterm(p: Any, wait: float) -> tuple[int, float]:
    """SIGTERM to the proxy: its exit code, and the seconds until it exited."""
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(p.proc.wait, wait)
    return code, time.monotonic() - t0


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
@pytest.mark.parametrize("pd", ["up", "hanging"])
async def test_sigterm_with_a_large_backlog_exits_in_time(tmp_path, fake_pd, hanging_pd, proxy_process,
                                                          own_redis, kind, pd):
    store = {"memory": "memory://", "sqlite": f"sqlite://{tmp_path}/state.db", "redis": own_redis.url}[kind]
    upstream = fake_pd.url if pd == "up" else hanging_pd
    port = free_port()
    p = await _start(proxy_process, tmp_path, port, store, upstream, "--send-timeout", "30",
                     "--shutdown-timeout", str(TIMEOUT), name="first")
    alerts = [{"labels": {"alertname": "Down", "instance": f"i{i}"}, "fingerprint": f"f{i}"}
              for i in range(GROUPS)]
    assert {st for _, st in await post_batches(f"http://127.0.0.1:{port}/v1/alertmanager", alerts,
                                               "firing", 200)} == {200}
    await asyncio.sleep(2)  # flushed; 110 sent (or hanging), the rest waits for the budget
    code, took = await _sigterm(p, TIMEOUT + 5)
    assert code == 0 and took <= TIMEOUT + 1.0, took
    if kind == "memory":
        return
    before = {r.dedup_key for r in fake_pd.accepted()}
    await _start(proxy_process, tmp_path, port, store, fake_pd.url, "--rate-limit", "100000", name="second")
    fake_pd.limit = 100000
    # Within 20 s: the sends cut short were given back to the outbox, not left to their
    # leases (send timeout + 5 s = 35 s).
    await wait_for(lambda: len({r.dedup_key for r in fake_pd.accepted()}) == GROUPS, timeout=20)
    assert before <= {r.dedup_key for r in fake_pd.accepted()}
    assert fake_pd.violations == []


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_sigterm_with_the_store_frozen_still_exits_in_time(tmp_path, fake_pd, hanging_pd,
                                                                 proxy_process, own_redis, kind):
    """PagerDuty hangs with a send under way on each of 20 routing keys, and the store stops
    answering (SIGSTOP): no release and no step of the shutdown can finish, and the proxy
    still exits within --shutdown-timeout. The store, thawed, holds everything, and a
    restart delivers it (the events whose release did not get through once their
    leases, send timeout + 5 s, end)."""
    store = {"sqlite": f"sqlite://{tmp_path}/state.db", "redis": own_redis.url}[kind]
    port = free_port()
    p = await _start(proxy_process, tmp_path, port, store, hanging_pd, "--send-timeout", "8",
                     "--shutdown-timeout", str(TIMEOUT), name="first")
    keys = [f"{k:032x}" for k in range(20)]
    async with aiohttp.ClientSession() as http:
        for k in keys:
            for n in range(3):
                async with http.post(f"http://127.0.0.1:{port}/v2/change/enqueue", json={
                        "routing_key": k, "payload": {"summary": f"deploy {n}", "source": "ci"}}) as r:
                    assert r.status == 202
    await asyncio.sleep(2)  # a send under way on every key
    assert p.proc is not None
    frozen = own_redis.proc.pid if kind == "redis" else children(p.proc.pid)[0]  # type: ignore[union-attr]
    os.kill(frozen, signal.SIGSTOP)
    try:
        code, took = await _sigterm(p, TIMEOUT + 10)
    finally:
        os.kill(frozen, signal.SIGCONT)
    assert code == 0 and took <= TIMEOUT, took
    if kind == "sqlite":  # the store's process ends once thawed: the proxy that fed it is gone
        await wait_for(lambda: not alive(frozen), timeout=5)
    await _start(proxy_process, tmp_path, port, store, fake_pd.url, "--rate-limit", "100000", name="second")
    await wait_for(lambda: len(fake_pd.accepted("/v2/change/enqueue")) >= len(keys) * 3, timeout=60)
    assert sorted((r.body["routing_key"], r.body["payload"]["summary"]) for r in fake_pd.accepted("/v2/change/enqueue")) == \
        sorted((k, f"deploy {n}") for k in keys for n in range(3))
    assert fake_pd.violations == []
