"""The cost of one event must not grow with the backlog: `python -m bench.scale
[--sizes 1000,10000,100000,1000000] [--stores memory,sqlite,redis] [--out bench/out/scale.json]
[--flush-only R]`.

For each store and each number N of open single-alert groups (one routing key, so the
budget lets 2 events/s out and the rest waits in the outbox):
- in process, with a manual clock: N groups recorded, then all due at once and flushed
  into the outbox, logging as `serve` does (a line per group, to a file): flush throughput
  (groups/s) and CPU per group (this process's, and Redis's); `--flush-only R` runs only
  this, R rounds with the stores taking turns;
- the real proxy over HTTP, against a fake PagerDuty enforcing 120/min: intake of N groups
  (alerts/s), CPU of the proxy's process while it paces 2 events/s with N waiting, p99 of
  single-alert requests at 200/s, a critical alert's page latency behind the N waiting
  (beyond group_wait), the event loop's worst lag while it flushes N groups (its own
  gauge), SIGTERM-to-exit time, and bytes per open group (RSS of the process;
  Redis: used_memory; SQLite: the file). The proxy's figures include its SQLite store's
  own process.
Figures print as they come and go to --out as JSON; bench/RESULTS.md has them by hand,
as ratios to the 1k figures."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PD_ROUTING_KEY", "0123456789abcdef0123456789abcdef")

from bench.run import Bench, cpu_seconds, process_cpu, rss
from tests.support.net import free_port
from tests.support.procs import children
from tests.support.redis_server import RedisServer

GROUP_WAIT = 1.0


def alert_body(start: int, n: int, severity: str = "info", name: str = "Scale") -> bytes:
    return orjson.dumps({"version": "4", "alerts": [
        {"status": "firing", "labels": {"alertname": name, "instance": f"i{i}", "severity": severity},
         "annotations": {"summary": f"scale alert {i}"}, "fingerprint": f"{name}-{i}"}
        for i in range(start, start + n)]})


# -- in process: flush throughput ---------------------------------------------------------------
async def flush_in_process(store_url: str, n: int, prefix: str,
                           server_pid: int | None = None) -> dict[str, Any]:
    import gc

    from proxy.clock import ManualClock
    from proxy.ingest import alertmanager
    from proxy.logs import setup_logging
    from proxy.metrics import Metrics
    from proxy.pipeline import Pipeline
    from proxy.rules import RuleSet, load_rules
    from proxy.store import from_url

    gc.set_threshold(5000, 10, 100)  # as `alert-proxy serve` does
    work = Path(tempfile.mkdtemp())
    logs = (work / "flush.log").open("w")  # it logs a line per flushed group, as `serve` does
    setup_logging("info", logs)
    rules = work / "rules.yml"
    rules.write_text("defaults:\n  routing_key: ${PD_ROUTING_KEY}\n  group_by: [alertname, instance]\n"
                     "  group_wait: 1s\n  group_interval: 5m\n  repeat_interval: 4h\n")
    others = set(children(os.getpid()))
    store = from_url(store_url, prefix=prefix)
    clock = ManualClock()
    p = Pipeline(RuleSet(load_rules([str(rules)])), store, clock, Metrics())
    t = time.perf_counter()
    for i in range(0, n, 500):
        await p.accept(alertmanager.parse(orjson.loads(alert_body(i, min(500, n - i)))))
    recorded = n / (time.perf_counter() - t)
    clock.advance(5)
    server_pids = [server_pid] if server_pid else sorted(set(children(os.getpid())) - others)  # SQLite's
    cpu0, server0 = time.process_time(), sum(map(process_cpu, server_pids))
    t = time.perf_counter()
    while await p.flush_due() or p.behind:
        pass
    took = time.perf_counter() - t
    cpu, server = time.process_time() - cpu0, sum(map(process_cpu, server_pids)) - server0
    await store.close()
    logs.close()
    shutil.rmtree(work)
    return {"record_alerts_per_s": round(recorded), "flush_groups_per_s": round(n / took),
            "flush_cpu_us_per_group": round(cpu / n * 1e6, 1),
            **({"flush_store_cpu_us_per_group": round(server / n * 1e6, 1)} if server_pids else {})}


# -- the real process ---------------------------------------------------------------------------
def tree_rss(pid: int) -> int:
    return sum(rss(p) for p in (pid, *children(pid)))


async def metric(base: str, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(base + "/metrics") as r:
        total = 0.0
        for line in (await r.text()).splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.split()[-1])
        return total


async def fill(base: str, n: int, batch: int = 64, workers: int = 8) -> float:
    url = base + "/v1/alertmanager"
    starts = list(range(0, n, batch))

    async def worker(s: aiohttp.ClientSession, mine: list[int]) -> None:
        for i in mine:
            async with s.post(url, data=alert_body(i, min(batch, n - i)),
                              headers={"Content-Type": "application/json"}) as r:
                assert r.status == 200, r.status

    t = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as s:
        await asyncio.gather(*(worker(s, starts[w::workers]) for w in range(workers)))
    return n / (time.perf_counter() - t)


async def paced_p99(base: str, n: int, rate: int = 200, seconds: int = 10) -> float:
    """Single-alert requests at `rate`/s (refreshes of open alerts): their p99 in ms."""
    url = base + "/v1/alertmanager"
    lat: list[float] = []
    async with aiohttp.ClientSession() as s:
        t0 = time.perf_counter()
        tasks = []

        async def one(i: int) -> None:
            t = time.perf_counter()
            async with s.post(url, data=alert_body(i % n, 1), headers={"Content-Type": "application/json"}) as r:
                await r.read()
            lat.append(time.perf_counter() - t)

        for k in range(rate * seconds):
            await asyncio.sleep(max(0.0, t0 + k / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(k * 7919)))
        await asyncio.gather(*tasks)
    lat.sort()
    return lat[int(len(lat) * 0.99) - 1] * 1000


def pd_events(log: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in log.read_bytes().splitlines()] if log.exists() else []


def process_run(b: Bench, kind: str, store: str, n: int, redis: RedisServer | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pd_port = free_port()
    log = b.work / f"pd-{kind}-{n}.jsonl"
    with b.process([sys.executable, "-m", "bench.fakepd", str(pd_port), str(log)], f"pd-{kind}-{n}", pd_port), \
            b.proxy(store, gw=f"{GROUP_WAIT:g}s", gi="5m", upstream=f"http://127.0.0.1:{pd_port}",
                    group_by="alertname, instance",
                    flags=("--max-groups", str(max(1_000_000, 2 * n)))) as (base, proc):  # room for the critical
        rss0 = tree_rss(proc.pid)
        mem0 = used_memory(redis)
        out["intake_alerts_per_s"] = round(asyncio.run(fill(base, n)))
        deadline = time.time() + 900
        lag = 0.0
        while time.time() < deadline:  # flushed: everything waits in the outbox
            lag = max(lag, asyncio.run(metric(base, "alert_proxy_event_loop_lag_seconds")))
            sent = sum(1 for e in pd_events(log) if e["status"] == 202)  # it paces meanwhile
            if asyncio.run(metric(base, "alert_proxy_outbox_depth")) + sent >= n and \
                    asyncio.run(metric(base, "alert_proxy_flush_lag_seconds")) == 0:
                break
            time.sleep(1)
        out["loop_lag_max_ms_while_flushing"] = round(lag * 1000, 1)
        out["flushed_after_s"] = round(time.time() - deadline + 900, 1)
        out["bytes_per_group"] = round((tree_rss(proc.pid) - rss0) / n)
        if redis is not None:
            out["redis_bytes_per_group"] = round((used_memory(redis) - mem0) / n)
        if kind == "sqlite":
            out["sqlite_file_bytes_per_group"] = round(sum(f.stat().st_size for f in b.work.glob("scale-*.db*")) / n)
        c0, t0 = cpu_seconds(proc.pid), time.time()
        time.sleep(20)
        out["cpu_while_pacing_pct"] = round(100 * (cpu_seconds(proc.pid) - c0) / (time.time() - t0), 1)
        out["paced_intake_p99_ms"] = round(asyncio.run(paced_p99(base, n)), 1)
        t_crit = time.time()
        asyncio.run(post_critical(base))
        while time.time() < t_crit + 120:
            got = [e for e in pd_events(log) if e.get("severity") == "critical" and e["status"] == 202]
            if got:
                out["critical_page_beyond_group_wait_s"] = round(got[0]["at"] - t_crit - GROUP_WAIT, 2)
                break
            time.sleep(0.05)
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        out["sigterm_to_exit_s"] = round(time.monotonic() - t_term, 2)
    return out


async def post_critical(base: str) -> None:
    async with aiohttp.ClientSession() as s, s.post(base + "/v1/alertmanager", headers={
            "Content-Type": "application/json"}, data=alert_body(0, 1, "critical", "DatabaseDown")) as r:
        assert r.status == 200


def used_memory(redis: RedisServer | None) -> int:
    if redis is None:
        return 0
    info = subprocess.run(["redis-cli", "-p", str(redis.port), "info", "memory"], capture_output=True,
                          text=True, check=False).stdout
    return int(next(ln for ln in info.splitlines() if ln.startswith("used_memory:")).split(":")[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--stores", default="memory,sqlite,redis")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "scale.json"))
    ap.add_argument("--flush-only", type=int, metavar="R", default=0,
                    help="only the in-process flush, R rounds with the stores taking turns (the VM "
                         "drifts by tens of percent within minutes); prints medians")
    args = ap.parse_args()
    results: dict[str, dict[str, Any]] = {}
    sizes, stores = list(map(int, args.sizes.split(","))), args.stores.split(",")
    with tempfile.TemporaryDirectory(prefix="alert-proxy-scale-") as tmp:
        b = Bench(False, Path(tmp))
        if args.flush_only:
            return flush_rounds(b, stores, sizes, args.flush_only, Path(args.out))
        for kind in stores:
            for n in sizes:
                with _store(b, kind, n) as (url, redis):
                    row = _inproc(b, url, n, f"inproc-{n}", redis)
                    store = {"memory": "memory://", "sqlite": f"sqlite://{b.work}/scale-{n}.db"}.get(kind, url)
                    if redis:
                        subprocess.run(["redis-cli", "-p", str(redis.port), "flushall"], check=False,
                                       capture_output=True)
                    row.update(process_run(b, kind, store, n, redis))
                results[f"{kind}/{n}"] = row
                print(f"{kind:6s} {n:>9,}  {json.dumps(row)}", flush=True)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


@contextlib.contextmanager
def _store(b: Bench, kind: str, n: int) -> Iterator[tuple[str, RedisServer | None]]:
    """A fresh store of `kind` for the in-process flush: its URL, and its Redis server."""
    redis = None
    if kind == "redis":
        redis = RedisServer(b.work / f"redis-{n}", free_port(), "--appendfsync", "everysec")
        redis.start()
    try:
        yield {"memory": "memory://", "sqlite": f"sqlite://{b.work}/scale-inproc-{n}.db"}.get(
            kind, redis.url if redis else ""), redis
    finally:
        if redis:
            redis.stop()


def _inproc(b: Bench, url: str, n: int, prefix: str, redis: RedisServer | None) -> dict[str, Any]:
    """The in-process flush of N groups, in a Python process of its own: each figure from a
    fresh heap, not one that earlier runs grew (its SQLite file removed after)."""
    code = ("import asyncio, json, sys; from bench.scale import flush_in_process; "
            "url, n, prefix, pid = sys.argv[1:]; "
            "print(json.dumps(asyncio.run(flush_in_process(url, int(n), prefix, int(pid) or None))))")
    pid = redis.proc.pid if redis and redis.proc else 0
    run = subprocess.run([sys.executable, "-c", code, url, str(n), prefix, str(pid)], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    if run.returncode:
        raise RuntimeError(f"the flush of {n} groups in {url} failed:\n{run.stderr[-3000:]}")
    row: dict[str, Any] = json.loads(run.stdout.splitlines()[-1])
    for f in b.work.glob("scale-inproc-*"):
        f.unlink()
    return row


def flush_rounds(b: Bench, stores: list[str], sizes: list[int], rounds: int, out: Path) -> int:
    """The in-process flush only, `rounds` times, the stores taking turns; the median and
    range of each."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for r in range(rounds):
        for n in sizes:
            for kind in stores:
                with _store(b, kind, n) as (url, redis):
                    row = _inproc(b, url, n, f"inproc-{n}-{r}", redis)
                runs.setdefault(f"{kind}/{n}", []).append(row)
                print(f"round {r + 1}  {kind:6s} {n:>9,}  {json.dumps(row)}", flush=True)
    summary = {}
    for name, rows in runs.items():
        summary[name] = {k: {"median": statistics.median(row[k] for row in rows),
                             "min": min(row[k] for row in rows), "max": max(row[k] for row in rows)}
                         for k in rows[0]}
        print(f"{name:16s} " + "  ".join(f"{k} {v['median']} ({v['min']}-{v['max']})"
                                         for k, v in summary[name].items()), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
