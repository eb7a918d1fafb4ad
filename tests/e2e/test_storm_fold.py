"""Storm folding at 10,000 distinct alerts, through the real CLI on every durable store and
memory (bench.storm drives it): folding costs the same per group whatever the storm's size,
so a critical alert sent while 10,000 folded groups look again still pages at once, the
event loop is never held, and SIGTERM exits in time. (Before: each folded group decoded
the whole storm; the critical page took 67 s on memory:// and never came on SQLite.)"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import aiohttp
import pytest

from tests.conftest import ROOT, wait_for, write_rules
from tests.support.net import free_port, wait_port


@pytest.mark.parametrize("store", ["memory", "sqlite", "redis"])
def test_10k_alerts_fold_and_a_critical_alert_still_pages_at_once(tmp_path, store):
    out = tmp_path / "storm.json"
    r = subprocess.run([sys.executable, "-m", "bench.storm", "--store", store, "--alerts", "10000",
                        "--out", str(out), "--workdir", str(tmp_path / "work")],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    [run] = json.loads(out.read_text())
    assert run["critical_page_beyond_group_wait_s"] is not None, run
    assert run["critical_page_beyond_group_wait_s"] < 5.0, run
    assert run["all_paged_or_folded_s"] is not None, run  # every group paged or folded
    assert run["folded"] == 10_000 - 20 and run["storm_folded_groups"] == 10_000 - 20, run
    assert run["pages"] == 22, run  # 20 groups before the storm, the critical one, the storm
    assert run["max_loop_lag_s"] < 0.5, run  # worst lateness: 0.007-0.014 s alone, 8.7 s before the fix
    assert run["max_flush_lag_s"] < 5.0, run  # the folded groups' looks every 10 s keep up
    assert run["sigterm_exit_s"] < 10.0, run  # --shutdown-timeout
    assert run["violations"] == 0 and run["429s"] == 0, run


JOBS_RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname, job]
  group_wait: 1s
  group_interval: 5s
  repeat_interval: 4h
  storm: {groups: 20, within: 2m}
sources:
  - name: jobs
    items: jobs
    status: "{{ 'resolved' if item.state == 'ok' else 'firing' }}"
    labels: {alertname: JobFailed, job: "{{ item.job }}", severity: "{{ item.severity }}"}
    summary: "Job {{ item.job }}: {{ item.state }}"
"""


def _gauge(text: str, name: str) -> float:
    return next(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines() if ln.startswith(name + " "))


async def test_one_8000_item_request_to_a_generic_source(tmp_path, fake_pd, proxy_process):
    """The issue's case: one request of 8,000 items to /v1/webhook/<name> left the flush
    783 s behind. The body is parsed off the event loop, the storm folds in linear time."""
    port = free_port()
    proc = proxy_process("--listen", f"127.0.0.1:{port}", "--rules",
                         str(write_rules(tmp_path / "rules", JOBS_RULES)), "--upstream", fake_pd.url)
    await asyncio.to_thread(wait_port, port)
    base = f"http://127.0.0.1:{port}"
    jobs = [{"job": f"j{i}", "state": "failed", "severity": "warning"} for i in range(8000)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        async with s.post(base + "/v1/webhook/jobs", json={"jobs": jobs}) as r:
            assert r.status == 200, await r.text()
        t_crit = time.time()
        async with s.post(base + "/v1/alertmanager", json={"version": "4", "alerts": [
                {"status": "firing", "labels": {"alertname": "DatabaseDown", "severity": "critical"}}]}) as r:
            assert r.status == 200

        def critical() -> list[float]:
            return [x.at for x in fake_pd.accepted()
                    if x.body.get("payload", {}).get("severity") == "critical"]
        await wait_for(lambda: bool(critical()), timeout=10)
        assert critical()[0] - t_crit - 1.0 < 5.0  # beyond its group_wait

        async def metrics() -> str:
            async with s.get(base + "/metrics") as r:
                return await r.text()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = await metrics()
            if _gauge(text, 'alert_proxy_alerts_suppressed_total{reason="folded"}') >= 7980:
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError("the storm never folded")
        await asyncio.sleep(5.5)  # the loop lag gauge covers the last 5 s
        text = await metrics()
        assert _gauge(text, "alert_proxy_event_loop_lag_seconds") < 0.5  # (a bound, not a target: bench/)
        assert _gauge(text, "alert_proxy_flush_lag_seconds") < 5.0
    storm = [x for x in fake_pd.accepted() if x.body["payload"]["custom_details"].get("storm")]
    assert storm and storm[-1].body["payload"]["custom_details"]["folded_groups"] == 7980
    assert len({x.dedup_key for x in fake_pd.accepted()}) == 22
    t = time.monotonic()
    proc.stop()
    assert time.monotonic() - t < 10.0
