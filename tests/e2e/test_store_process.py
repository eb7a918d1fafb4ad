"""The SQLite store's own process, through the real CLI: it ignores the signals a service
manager sends to every process of the service (the proxy's shutdown closes it), a store
process killed mid-storm is replaced and loses nothing that was answered 2xx, and it ends
when the proxy is killed."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from tests.conftest import wait_for
from tests.support.net import free_port, wait_port
from tests.support.procs import alive, children
from tests.support.proxies import all_resolved, paged, start, until_accepted
from tests.support.storm import outage, post_batches


async def store_pid(proxy_pid: int) -> int:
    await wait_for(lambda: len(children(proxy_pid)) == 1, timeout=10)
    (pid,) = children(proxy_pid)
    assert "child_main" in Path(f"/proc/{pid}/cmdline").read_text()
    return pid


async def serve_sqlite(proxy_process, tmp_path, fake_pd):
    """The real proxy on a SQLite file: it, its port, its intake URL, its store's pid."""
    port = free_port()
    proc = start(proxy_process, tmp_path, f"sqlite://{tmp_path}/state.db", "first", port, fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    assert proc.proc is not None
    return proc, port, f"http://127.0.0.1:{port}/v1/alertmanager", await store_pid(proc.proc.pid)


async def test_store_process_killed_mid_storm_is_replaced_and_loses_nothing(tmp_path, fake_pd,
                                                                           proxy_process):
    proc, _, url, first = await serve_sqlite(proxy_process, tmp_path, fake_pd)
    alerts = outage(kinds=("Down", "Latency"), services=10, instances=10)
    answers: list[int] = []
    accepted = await until_accepted(url, alerts[:100], "firing", answers)
    for sig in (signal.SIGTERM, signal.SIGINT):  # what systemd and a terminal send to the whole group
        os.kill(first, sig)
    await asyncio.sleep(0.3)
    assert alive(first) and proc.proc.poll() is None
    os.kill(first, signal.SIGSTOP)  # held: the next request waits for it
    held = asyncio.ensure_future(post_batches(url, alerts[100:120], "firing", batch=20))
    await asyncio.sleep(0.5)
    assert not held.done()
    os.kill(first, signal.SIGKILL)
    assert [st for _, st in await held] == [503]  # what the killed process held: refused, to be sent again
    accepted |= await until_accepted(url, alerts[100:], "firing", answers)
    assert set(answers) == {200}
    second = await store_pid(proc.proc.pid)
    assert second != first and not alive(first)
    want = {str(a["fingerprint"]) for a in alerts}
    assert accepted == want
    await wait_for(lambda: paged(fake_pd) == want, timeout=60)
    await until_accepted(url, alerts, "resolved")
    await wait_for(lambda: all_resolved(fake_pd), timeout=60)
    assert all(actions.count("resolve") == 1 for actions in fake_pd.by_dedup().values())
    assert fake_pd.violations == [] and fake_pd.count(429) == 0

    # SIGTERM to every process of the service: the proxy ends, and its store with it
    t0 = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    os.kill(second, signal.SIGTERM)
    assert await asyncio.to_thread(proc.proc.wait, 15) == 0
    await wait_for(lambda: not alive(second), timeout=5)
    assert time.monotonic() - t0 < 12


async def test_store_process_ends_with_a_killed_proxy(tmp_path, fake_pd, proxy_process):
    proc, port, url, child = await serve_sqlite(proxy_process, tmp_path, fake_pd)
    alerts = outage(kinds=("Down",), services=5, instances=10)
    await until_accepted(url, alerts, "firing")
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait()
    await wait_for(lambda: not alive(child), timeout=5)  # no orphan left holding the file
    again = start(proxy_process, tmp_path, f"sqlite://{tmp_path}/state.db", "second", port, fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    want = {str(a["fingerprint"]) for a in alerts}
    await wait_for(lambda: paged(fake_pd) == want, timeout=60)
    assert again.proc is not None and again.proc.poll() is None
