"""A shutdown that ends: SIGTERM with a large backlog, on every store, with PagerDuty up
and with PagerDuty hanging; the process exits within --shutdown-timeout, and a restart on
the durable stores delivers everything."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator

import pytest

from tests.conftest import wait_for, write_rules
from tests.support.net import free_port, wait_port
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


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
@pytest.mark.parametrize("pd", ["up", "hanging"])
async def test_sigterm_with_a_large_backlog_exits_in_time(tmp_path, fake_pd, hanging_pd, proxy_process,
                                                          own_redis, kind, pd):
    store = {"memory": "memory://", "sqlite": f"sqlite://{tmp_path}/state.db", "redis": own_redis.url}[kind]
    upstream = fake_pd.url if pd == "up" else hanging_pd
    rules = write_rules(tmp_path / "rules", RULES)
    port = free_port()
    p = proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--store", store,
                      "--upstream", upstream, "--send-timeout", "30", "--shutdown-timeout", str(TIMEOUT),
                      name="first")
    await asyncio.to_thread(wait_port, port)
    alerts = [{"labels": {"alertname": "Down", "instance": f"i{i}"}, "fingerprint": f"f{i}"}
              for i in range(GROUPS)]
    assert {st for _, st in await post_batches(f"http://127.0.0.1:{port}/v1/alertmanager", alerts,
                                               "firing", 200)} == {200}
    await asyncio.sleep(2)  # flushed; 110 sent (or hanging), the rest waits for the budget
    assert p.proc is not None
    t0 = time.monotonic()
    p.proc.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(p.proc.wait, TIMEOUT + 5)
    took = time.monotonic() - t0
    assert code == 0 and took <= TIMEOUT + 1.0, took
    if kind == "memory":
        return
    before = {r.dedup_key for r in fake_pd.accepted()}
    proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--store", store,
                  "--upstream", fake_pd.url, "--rate-limit", "100000", name="second")
    await asyncio.to_thread(wait_port, port)
    fake_pd.limit = 100000
    # Within 20 s: the sends cut short were given back to the outbox, not left to their
    # leases (send timeout + 5 s = 35 s).
    await wait_for(lambda: len({r.dedup_key for r in fake_pd.accepted()}) == GROUPS, timeout=20)
    assert before <= {r.dedup_key for r in fake_pd.accepted()}
    assert fake_pd.violations == []
