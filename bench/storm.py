"""Storm folding at scale: `python -m bench.storm --store sqlite --alerts 10000 100000`.

For each store and size: the real proxy (`alert-proxy serve`, storm folding on, one group
per alert) in front of the fake PagerDuty; N distinct warning alerts posted as Alertmanager
posts them (64 a request, 4 requests at a time). Every folded group looks again each
group_interval: 10 s per 10,000 alerts here (a wave of N looks every N/1000 s; the
defaults, 5m and a 2m storm window, make it N/120 s); once every group is paged or folded,
in the first wave of looks, one critical alert. It measures how long after its group_wait
the critical page reaches PagerDuty, how long until every group is paged or folded, the
event loop's worst lag and the flush lag (from /metrics, read every 0.5 s, over three
waves), and how long SIGTERM takes to exit.

Prints one JSON line per run and writes them all to --out. Not a timed test: the test
suite runs it once at 10,000 alerts (tests/e2e/test_storm_fold.py) and checks the result;
the figures go to bench/RESULTS.md."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.fakepd import FakePagerDuty
from tests.support.net import free_port, wait_port
from tests.support.redis_server import RedisServer
from tests.support.storm import am_body

KEY = "0123456789abcdef0123456789abcdef"
GROUP_WAIT = 2.0
STORM_GROUPS = 20
RULES = """
defaults:
  routing_key: ${{PD_ROUTING_KEY}}
  group_by: [alertname, instance]
  group_wait: {group_wait:g}s
  group_interval: {interval}s
  repeat_interval: 4h
  storm: {{groups: {storm_groups}, within: 10m}}
"""


def _metric(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def _post_all(url: str, n: int, batch: int, parallel: int) -> float:
    """Post N distinct warning alerts; returns the seconds it took. Every batch must be
    answered 200."""
    bodies = [am_body([{"labels": {"alertname": "InstanceDown", "instance": f"i{j}",
                                   "severity": "warning"},
                        "annotations": {"summary": f"instance i{j} is down"},
                        "fingerprint": f"storm-{j}"} for j in range(i, min(n, i + batch))],
                      "firing") for i in range(0, n, batch)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    t0 = time.monotonic()
    async with aiohttp.ClientSession(headers={"Content-Type": "application/json"},
                                     timeout=aiohttp.ClientTimeout(total=60)) as s:
        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                async with s.post(url, data=body) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"intake answered {r.status}")
        await asyncio.gather(*(worker() for _ in range(parallel)))
    return time.monotonic() - t0


async def run_one(store: str, n: int, work: Path, batch: int = 64, parallel: int = 4,
                  timeout: float = 600.0) -> dict[str, Any]:
    pd = FakePagerDuty()
    await pd.start()
    port = free_port()
    rules = Path(tempfile.mkdtemp(prefix="rules-", dir=work))
    interval = max(10, n // 1000)  # seconds between a folded group's looks
    (rules / "rules.yml").write_text(RULES.format(group_wait=GROUP_WAIT, interval=interval,
                                                  storm_groups=STORM_GROUPS))
    log = (work / f"proxy-{store.split(':')[0]}-{n}.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}", "--rules", str(rules),
         "--store", store, "--upstream", pd.url, "--log-level", "warning"],
        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "PD_ROUTING_KEY": KEY})
    base = f"http://127.0.0.1:{port}"
    samples: list[tuple[float, float, float, float]] = []  # (t, loop lag, flush lag, folded)
    stop = asyncio.Event()

    async def sample(s: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            try:
                async with s.get(base + "/metrics") as r:
                    text = await r.text()
                samples.append((time.monotonic(), _metric(text, "alert_proxy_event_loop_lag_seconds"),
                                _metric(text, "alert_proxy_flush_lag_seconds"),
                                _metric(text, "alert_proxy_alerts_suppressed_total", '{reason="folded"}')))
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.5)

    try:
        await asyncio.to_thread(wait_port, port)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            sampler = asyncio.create_task(sample(s))
            t_start = time.monotonic()
            intake_s = await _post_all(base + "/v1/alertmanager", n, batch, parallel)
            deadline = time.monotonic() + timeout
            folded_all_s = None  # every group paged (the first STORM_GROUPS) or folded
            while time.monotonic() < deadline:
                if samples and samples[-1][3] >= n - STORM_GROUPS and samples[-1][2] < 1.0:
                    folded_all_s = round(samples[-1][0] - t_start, 2)
                    break
                await asyncio.sleep(0.2)
            # the critical alert, while the folded groups look again
            await asyncio.sleep(max(0.0, t_start + interval + 2 - time.monotonic()))
            crit = am_body([{"labels": {"alertname": "DatabaseDown", "instance": "db1",
                                        "severity": "critical"}, "fingerprint": "crit"}], "firing")
            t_crit = time.time()
            async with s.post(base + "/v1/alertmanager", data=crit,
                              headers={"Content-Type": "application/json"}) as r:
                assert r.status == 200, r.status
            critical_page_s = None
            while time.monotonic() < deadline:
                hit = next((x for x in pd.accepted() if x.dedup_key and
                            x.body.get("payload", {}).get("severity") == "critical"), None)
                if hit is not None:
                    critical_page_s = round(hit.at - t_crit - GROUP_WAIT, 3)
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(max(0.0, t_start + 3.5 * interval - time.monotonic()))
            stop.set()
            await sampler
        triggers = [x for x in pd.accepted() if x.action == "trigger"]
        storm = [x.body["payload"]["custom_details"] for x in triggers
                 if x.body["payload"]["custom_details"].get("storm")]
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 60)
        sigterm_exit_s = round(time.monotonic() - t_term, 2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        await pd.stop()
    return {"store": store.split(":")[0], "alerts": n, "intake_s": round(intake_s, 2),
            "intake_alerts_per_s": round(n / intake_s), "critical_page_beyond_group_wait_s": critical_page_s,
            "all_paged_or_folded_s": folded_all_s,
            "max_loop_lag_s": max((x[1] for x in samples), default=None),
            "max_flush_lag_s": max((x[2] for x in samples), default=None),
            "folded": samples[-1][3] if samples else 0, "pages": len({x.dedup_key for x in triggers}),
            "storm_pages": len(storm),
            "storm_folded_groups": storm[-1]["folded_groups"] if storm else 0,
            "violations": len(pd.violations), "429s": pd.count(429),
            "sigterm_exit_s": sigterm_exit_s,
            "timeline": [(round(t - t_start, 1), lag, round(flush, 2), folded)
                         for t, lag, flush, folded in samples] if os.environ.get("BENCH_TIMELINE") else None}


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="alert-proxy-storm-") as tmp:
        work = Path(args.workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for kind in args.store:
            for n in args.alerts:
                server = None
                if kind == "redis":
                    server = RedisServer(work / f"redis-{n}", free_port())
                    server.start()
                    store = server.url
                elif kind == "sqlite":
                    store = f"sqlite://{work}/storm-{n}.db"
                else:
                    store = "memory://"
                try:
                    r = await run_one(store, n, work)
                finally:
                    if server:
                        server.stop()
                print(json.dumps(r), flush=True)
                out.append(r)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", nargs="+", default=["memory", "sqlite", "redis"],
                    choices=["memory", "sqlite", "redis"])
    ap.add_argument("--alerts", nargs="+", type=int, default=[10_000, 100_000])
    ap.add_argument("--out", help="write the runs here as JSON")
    ap.add_argument("--workdir", help="keep the proxies' logs and files here")
    args = ap.parse_args()
    results = asyncio.run(main_async(args))
    if args.out:
        Path(args.out).write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
