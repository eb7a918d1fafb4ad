"""The benchmark: `python -m bench.run [--quick] [--rounds N]` (see README). Starts everything it needs
on 127.0.0.1 (bare aiohttp baseline, the proxy in memory and redis modes, redis-server,
Alertmanager, a fake PagerDuty), drives load with wrk, and prints one table.

Not a timed test: figures go to bench/RESULTS.md by hand, with the machine."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.net import free_port, wait_port
from tests.support.procs import children
from tests.support.redis_server import RedisServer
from tests.support.storm import outage, post_batches

KEY = "0123456789abcdef0123456789abcdef"
RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [%(group_by)s]
  group_wait: %(gw)s
  group_interval: %(gi)s
  repeat_interval: 4h
  max_alerts: 200000
%(extra)s"""


class Bench:
    def __init__(self, quick: bool, workdir: Path, rounds: int = 3) -> None:
        self.quick, self.work, self.rounds = quick, workdir, rounds
        self.duration = 2 if quick else 10
        self.rows: list[dict[str, Any]] = []
        self.notes: dict[str, Any] = {}

    @contextmanager
    def process(self, args: list[str], name: str, port: int,
                env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
        log = (self.work / f"{name}.log").open("ab")
        p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                             env={**os.environ, "PD_ROUTING_KEY": KEY, **(env or {})})
        try:
            wait_port(port)
            yield p
        finally:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    @contextmanager
    def proxy(self, store: str = "memory://", gw: str = "30s", gi: str = "5m",
              upstream: str = "http://127.0.0.1:9", extra: str = "",
              group_by: str = "alertname, service",
              flags: Sequence[str] = ()) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
        port = free_port()
        rules = Path(tempfile.mkdtemp(prefix=f"rules-{port}-", dir=self.work))  # a port comes again
        (rules / "rules.yml").write_text(RULES % {"gw": gw, "gi": gi, "extra": extra, "group_by": group_by})
        with self.process([sys.executable, "-m", "proxy", "serve", "--listen", f"127.0.0.1:{port}",
                           "--rules", str(rules), "--store", store, "--upstream", upstream,
                           "--log-level", "warning", *flags], f"proxy-{port}", port) as p:
            yield f"http://127.0.0.1:{port}", p

    def wrk(self, url: str, fmt: str, batch: int, open_alerts: int = 100_000,
            duration: int | None = None) -> dict[str, Any]:
        env = {**os.environ, "BATCH": str(batch), "OPEN": str(open_alerts), "FORMAT": fmt}
        cmd = ["wrk", "-t1", "-c64", f"-d{duration or self.duration}s", "--timeout", "10s",
               "-s", str(ROOT / "bench" / "alerts.lua"), url]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                             check=False).stdout
        line = next(ln for ln in out.splitlines() if ln.startswith("JSON "))
        r = json.loads(line[5:])
        secs = r["duration_us"] / 1e6
        r["rps"] = r["requests"] / secs
        r["alerts_per_s"] = r["rps"] * (1 if fmt == "events_v2" else batch)
        return r

    def row(self, what: str, r: dict[str, Any], **extra: Any) -> None:
        self.rows.append({"what": what, **r, **extra})
        print(f"  {what}: {r['rps']:.0f} req/s, {r['alerts_per_s']:.0f} alerts/s, "
              f"p50 {r['p50_us'] / 1000:.1f} ms, p99 {r['p99_us'] / 1000:.1f} ms, "
              f"errors {r['errors']}, non-2xx {r['non2xx']} {extra or ''}", flush=True)
        if r["non2xx"] or r["errors"]:  # what the server said about it (the logs go with the work dir)
            logs = sorted(self.work.glob("proxy-*.log"), key=lambda f: f.stat().st_mtime)
            if logs:
                print("    " + "\n    ".join(logs[-1].read_text(errors="replace").splitlines()[-20:]),
                      flush=True)

    # -- ingest throughput ------------------------------------------------------------
    def throughput(self) -> None:
        """Every server at 1 and 64 alerts per request, in rounds: a round measures the bare
        handler, each store and Alertmanager once, minutes apart at most, so each ratio is
        taken within a round (the VM's speed drifts from minute to minute, by a third from
        one hour to the next) and `ratios` reports its median over the rounds."""
        print("ingest throughput", flush=True)
        for i in range(self.rounds):
            if self.rounds > 1:
                print(f" round {i + 1} of {self.rounds}", flush=True)
            self.bare(i)
            for mode in ("memory", "sqlite", "redis"):
                self.store_round(mode, i, events_v2=i == 0)
            self.alertmanager(i)

    def bare(self, rnd: int) -> None:
        port = free_port()
        with self.process([sys.executable, str(ROOT / "bench" / "bare.py"), str(port)], "bare", port):
            url = f"http://127.0.0.1:{port}/v1/alertmanager"
            self.wrk(url, "webhook", 1, duration=1)
            self.row("bare aiohttp+orjson, 1 alert/request", self.wrk(url, "webhook", 1), round=rnd)
            self.row("bare aiohttp+orjson, 64 alerts/request", self.wrk(url, "webhook", 64), round=rnd)

    def store_round(self, mode: str, rnd: int, events_v2: bool) -> None:
        server = None
        store = "memory://"
        if mode == "redis":
            server = RedisServer(self.work / f"redis-tp-{rnd}", free_port())
            server.start()
            store = server.url
        elif mode == "sqlite":
            store = f"sqlite://{self.work}/bench-{mode}-{rnd}.db"
        try:
            for batch in (1, 64):
                with self.proxy(store) as (base, p):
                    url = base + "/v1/alertmanager"
                    self.wrk(url, "webhook", batch, duration=1)
                    before = self.redis_calls(server)
                    cpu0 = cpu_seconds(p.pid), redis_cpu(server)
                    r = self.wrk(url, "webhook", batch)
                    extra: dict[str, Any] = {"round": rnd}
                    # sizing: alerts per CPU-second of the proxy (its SQLite child
                    # included) and of redis-server
                    alerts = r["alerts_per_s"] * r["duration_us"] / 1e6
                    extra["alerts_per_proxy_cpu_s"] = round(alerts / max(cpu_seconds(p.pid) - cpu0[0], 1e-3))
                    if server:
                        extra["alerts_per_redis_cpu_s"] = round(alerts / max(redis_cpu(server) - cpu0[1], 1e-3))
                    if r["non2xx"]:  # which answers: the proxy counts what it refused
                        extra["refused"] = self.refused(base)
                    if server:
                        after = self.redis_calls(server)
                        n = max(1, r["requests"])
                        # EVALSHA: round trips of the ingest path (+ ~25/s of background
                        # loops); commands: everything Redis ran, inside the scripts too
                        extra["redis_evalsha_per_req"] = round((after[0] - before[0]) / n, 2)
                        extra["redis_cmds_per_req"] = round((after[1] - before[1]) / n, 2)
                    self.row(f"proxy {mode}, {batch} alert(s)/request", r, **extra)
            if events_v2:
                with self.proxy(store) as (base, _):
                    url = base + "/v2/enqueue"
                    self.row(f"proxy {mode}, Events v2 /v2/enqueue", self.wrk(url, "events_v2", 1))
        finally:
            if server:
                server.stop()

    @staticmethod
    def refused(base: str) -> dict[str, int]:
        """Requests the proxy refused so far, by status, from its /metrics."""
        with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
        counts: dict[str, int] = {}
        for line in text.splitlines():
            if line.startswith("alert_proxy_requests_rejected_total{"):
                status = line.split('status="')[1].split('"')[0]
                counts[status] = counts.get(status, 0) + int(float(line.rsplit(" ", 1)[1]))
        return {status: n for status, n in counts.items() if n}

    @staticmethod
    def redis_calls(server: RedisServer | None) -> tuple[int, int]:
        """(EVALSHA calls, all calls) so far, from INFO commandstats."""
        if server is None:
            return 0, 0
        out = subprocess.run(["redis-cli", "-p", str(server.port), "info", "commandstats"],
                             capture_output=True, text=True, check=False).stdout
        total = evalsha = 0
        for line in out.splitlines():
            if line.startswith("cmdstat_") and not line.startswith(("cmdstat_info", "cmdstat_ping")):
                calls = int(line.split("calls=")[1].split(",")[0])
                total += calls
                if line.startswith("cmdstat_evalsha"):
                    evalsha += calls
        return evalsha, total

    def ratios(self) -> None:
        """The throughput targets (bench/RESULTS.md "Targets"): each ratio taken within one
        round, then its median over the rounds; with the medians of the figures behind them."""
        def get(rnd: int, what: str, field: str) -> float | None:
            return next((float(r[field]) for r in self.rows
                         if r["what"] == what and r.get("round") == rnd), None)

        bare, am = "bare aiohttp+orjson, 1 alert/request", "Alertmanager 0.25 API, 64 alerts/request"
        mem1, mem64 = "proxy memory, 1 alert(s)/request", "proxy memory, 64 alert(s)/request"
        sql1, sql64 = "proxy sqlite, 1 alert(s)/request", "proxy sqlite, 64 alert(s)/request"
        pairs = [("memory 1/req vs bare", (mem1, "rps"), (bare, "rps"), ">= 0.65"),
                 ("memory 64/req vs Alertmanager", (mem64, "alerts_per_s"), (am, "alerts_per_s"), ">= 2"),
                 ("sqlite 1/req vs memory", (sql1, "rps"), (mem1, "rps"), ">= 0.5"),
                 ("sqlite 1/req p99 vs memory", (sql1, "p99_us"), (mem1, "p99_us"), "<= 3"),
                 ("sqlite 64/req vs Alertmanager", (sql64, "alerts_per_s"), (am, "alerts_per_s"), ">= 1"),
                 ("redis 64/req vs Alertmanager", ("proxy redis, 64 alert(s)/request", "alerts_per_s"),
                  (am, "alerts_per_s"), "-")]
        print(f"medians over {self.rounds} round(s)", flush=True)
        for what in (bare, mem1, sql1, am, mem64, sql64):
            figs = [r for r in self.rows if r["what"] == what and "round" in r]
            if figs:
                print(f"  {what}: {statistics.median(r['alerts_per_s'] for r in figs):.0f} alerts/s, "
                      f"p99 {statistics.median(r['p99_us'] for r in figs) / 1000:.1f} ms", flush=True)
        print("ratios in this run (median of the rounds'; each round's)", flush=True)
        for name, (wa, fa), (wb, fb), goal in pairs:
            per = [x / y for rnd in range(self.rounds)
                   if (x := get(rnd, wa, fa)) is not None and (y := get(rnd, wb, fb))]
            if not per:
                continue
            self.notes.setdefault("ratios", {})[name] = round(statistics.median(per), 2)
            self.notes.setdefault("ratio_rounds", {})[name] = [round(x, 2) for x in per]
            print(f"  {name}: {statistics.median(per):.2f} (goal {goal}; "
                  f"{', '.join(f'{x:.2f}' for x in per)})", flush=True)

    def alertmanager(self, rnd: int) -> None:
        if not shutil.which("prometheus-alertmanager"):
            print("  (prometheus-alertmanager not installed: skipped)")
            return
        port = free_port()
        cfg = self.work / "am.yml"
        cfg.write_text("route: {receiver: none, group_wait: 30s}\nreceivers: [{name: none}]\n")
        with self.process(["prometheus-alertmanager", f"--config.file={cfg}",
                           f"--storage.path={self.work / f'am-data-{rnd}'}",
                           f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
                           "--log.level=warn"], "alertmanager", port):
            time.sleep(1)
            url = f"http://127.0.0.1:{port}/api/v2/alerts"
            self.wrk(url, "am_api", 64, duration=1)
            self.row("Alertmanager 0.25 API, 64 alerts/request", self.wrk(url, "am_api", 64), round=rnd)

    # -- per-alert cost and memory ------------------------------------------------------
    def flatness(self) -> None:
        print("per-alert cost by open alerts (memory mode, 64 alerts/request)", flush=True)
        sizes = (100, 10_000) if self.quick else (100, 10_000, 100_000)
        for n in sizes:
            with self.proxy() as (base, _):
                url = base + "/v1/alertmanager"
                self.wrk(url, "webhook", 64, open_alerts=n, duration=2 if self.quick else 4)  # fill
                r = self.wrk(url, "webhook", 64, open_alerts=n)
                self.row(f"open alerts {n}", r, us_per_alert=round(1e6 / r["alerts_per_s"], 2))

    def memory(self) -> None:
        n = 10_000 if self.quick else 100_000
        with self.proxy() as (base, p):
            rss0 = rss(p.pid)
            alerts = [{"labels": {"alertname": f"Mem{i % 50}", "service": f"svc{i % 20}",
                                  "instance": f"i{i}", "severity": "warning"},
                       "annotations": {"summary": f"bench alert {i}"}, "fingerprint": f"m{i}"}
                      for i in range(n)]
            statuses = asyncio.run(post_batches(base + "/v1/alertmanager", alerts, "firing", 500))
            assert {s for _, s in statuses} == {200}, statuses[:3]
            rss1 = rss(p.pid)
        self.notes["memory_per_open_alert_bytes"] = round((rss1 - rss0) / n)
        print(f"memory per open alert: {(rss1 - rss0) / n:.0f} B ({n} alerts, RSS "
              f"{rss0 / 1e6:.0f} -> {rss1 / 1e6:.0f} MB)", flush=True)

    def intake_during_flush(self) -> None:
        """Events v2 intake while 100 groups of 1,000 alerts fall due at once: a flush of
        large groups must not hold intake (flush.FLUSH_ALERTS). Against the Events v2 rows
        above, where nothing falls due on memory://."""
        n, gw, secs = (10_000, 3, 4) if self.quick else (100_000, 10, 10)
        print(f"Events v2 intake while 100 groups of {n // 100:,} alerts fall due", flush=True)
        alerts = [{"labels": {"alertname": f"Big{i % 100}", "instance": f"i{i}"}, "fingerprint": f"b{i}"}
                  for i in range(n)]
        for mode in ("memory", "sqlite"):
            store = "memory://" if mode == "memory" else f"sqlite://{self.work}/bench-flush.db"
            with self.proxy(store, gw=f"{gw}s") as (base, _):
                t0 = time.monotonic()
                statuses = asyncio.run(post_batches(base + "/v1/alertmanager", alerts, "firing", 500))
                assert {s for _, s in statuses} == {200}, statuses[:3]
                filled = time.monotonic() - t0
                r = self.wrk(base + "/v2/enqueue", "events_v2", 1, duration=secs)
                self.row(f"proxy {mode}, Events v2 while large groups fall due", r,
                         due_after_s=round(gw - filled, 1))  # (within the measurement)

    # -- page latency and egress --------------------------------------------------------
    def page_latency(self) -> None:
        samples = 10 if self.quick else 100
        pd_port = free_port()
        log = self.work / "pd-latency.jsonl"
        with self.process([sys.executable, "-m", "bench.fakepd", str(pd_port), str(log)], "pd-lat", pd_port), \
                self.proxy(gw="1s", gi="5m", upstream=f"http://127.0.0.1:{pd_port}") as (base, _):
            sent: dict[str, float] = {}

            async def go() -> None:
                async with aiohttp.ClientSession() as s:
                    for i in range(samples):
                        rk = f"{i:032d}"
                        sent[rk] = time.time()
                        async with s.post(base + "/v2/enqueue", json={
                                "routing_key": rk, "event_action": "trigger", "dedup_key": f"lat{i}",
                                "payload": {"summary": "latency probe", "source": "bench",
                                            "severity": "error"}}) as r:
                            assert r.status == 202
                        await asyncio.sleep(0.05)
            asyncio.run(go())
            deadline = time.time() + 15
            got: dict[str, float] = {}
            while time.time() < deadline and len(got) < samples:
                time.sleep(0.2)
                got = {e["routing_key"]: e["at"] for e in map(orjson.loads, log.read_bytes().splitlines())
                       if e["status"] == 202}
        added = sorted((got[k] - sent[k] - 1.0) * 1000 for k in got)
        p50, p99 = added[len(added) // 2], added[min(len(added) - 1, int(len(added) * 0.99))]
        self.notes.update(page_latency_p50_ms=round(p50, 1), page_latency_p99_ms=round(p99, 1),
                          page_latency_samples=len(added))
        print(f"added latency to a page (beyond group_wait): p50 {p50:.1f} ms, p99 {p99:.1f} ms "
              f"({len(added)}/{samples} pages)", flush=True)

    def egress(self, name: str, alerts: list[dict[str, object]], spread_s: float,
               storm: tuple[int, str] | None = None) -> None:
        """An outage through the proxy to a fake PagerDuty that enforces 120/min per key:
        the events it sends, the incidents PagerDuty opens (pages), the 429s it draws,
        and how long the last page and the last resolve take. `storm`: (groups, within)
        of the defaults' `storm:` setting."""
        pd_port = free_port()
        log = self.work / f"pd-{name}.jsonl"
        extra = f"  storm: {{groups: {storm[0]}, within: {storm[1]}}}\n" if storm else ""
        with self.process([sys.executable, "-m", "bench.fakepd", str(pd_port), str(log)], f"pd-{name}", pd_port), \
                self.proxy(gw="1s", gi="2s", upstream=f"http://127.0.0.1:{pd_port}", extra=extra) as (base, _):
            url = base + "/v1/alertmanager"
            groups = {(a["labels"]["alertname"], a["labels"]["service"]) for a in alerts}  # type: ignore[index]
            pages = storm[0] + 1 if storm and len(groups) > storm[0] else len(groups)
            t0 = time.time()

            async def fire() -> None:
                step = max(1, len(alerts) // max(1, int(spread_s * 10)))
                for i in range(0, len(alerts), step):
                    await post_batches(url, alerts[i:i + step], "firing", 500)
                    await asyncio.sleep(0.1)
            asyncio.run(fire())

            def events() -> list[dict[str, Any]]:
                return [orjson.loads(x) for x in log.read_bytes().splitlines()] if log.exists() else []

            deadline = time.time() + 300
            while time.time() < deadline and len({e["dedup_key"] for e in events()
                                                  if e["status"] == 202}) < pages:
                time.sleep(0.2)
            time.sleep(3 if storm else 0)  # the storm incident's last update
            t_resolve = time.time()
            asyncio.run(post_batches(url, alerts, "resolved", 500))
            while time.time() < deadline and sum(1 for e in events() if e["status"] == 202
                                                 and e["action"] == "resolve") < pages:
                time.sleep(0.2)
            ev = events()
        ok = [e for e in ev if e["status"] == 202]
        triggers = [e["at"] for e in ok if e["action"] == "trigger"]
        first = min(triggers, default=float("nan"))
        last = max((e["at"] for e in ok if e["action"] == "resolve"), default=float("nan"))
        res = {"alerts": len(alerts), "groups": len(groups), "events": len(ok),
               "pages": len({e["dedup_key"] for e in ok if e["action"] == "trigger"}),
               "429s": sum(1 for e in ev if e["status"] == 429),
               "max_in_60s": _max_in_window([e["at"] for e in ok]),
               "first_page_s": round(first - t0, 2),
               "last_page_s": round(max(triggers, default=float("nan")) - t0, 2),
               "last_resolve_after_resolving_s": round(last - t_resolve, 2)}
        self.notes[f"egress_{name}"] = res
        print(f"egress {name}: {res}", flush=True)


def _max_in_window(times: list[float], window: float = 60.0) -> int:
    ts, best, j = sorted(times), 0, 0
    for i, t in enumerate(ts):
        while ts[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU seconds of the proxy so far, its store's process included."""
    return sum(process_cpu(p) for p in (pid, *children(pid)))


def redis_cpu(server: RedisServer | None) -> float:
    """redis-server's CPU seconds so far (INFO cpu)."""
    if server is None:
        return 0.0
    out = subprocess.run(["redis-cli", "-p", str(server.port), "info", "cpu"], capture_output=True,
                         text=True, check=False).stdout
    return sum(float(line.split(":")[1]) for line in out.splitlines()
               if line.startswith(("used_cpu_sys:", "used_cpu_user:")))


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a short smoke run (the test suite's)")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds of the throughput figures, whose ratios are taken within a "
                         "round (default 3; 1 with --quick)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "out"), help="where results.json goes")
    args = ap.parse_args()
    if args.rounds is not None and args.rounds < 1:
        ap.error("--rounds must be at least 1")
    for tool in ("wrk", "redis-server"):
        if not shutil.which(tool):
            print(f"bench: {tool} is not installed (apt-get install wrk redis-server)", file=sys.stderr)
            return 2
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="alert-proxy-bench-") as tmp:
        b = Bench(args.quick, Path(tmp), args.rounds or (1 if args.quick else 3))
        b.throughput()
        b.ratios()
        b.flatness()
        b.memory()
        b.intake_during_flush()
        b.page_latency()
        if args.quick:
            b.egress("cascade", outage(kinds=("Down",), services=6, instances=10), 1.0)
        else:
            b.egress("cascade", outage() + [{"labels": {"alertname": "ClusterDown", "service": "k8s"},
                                              "fingerprint": "cluster-down"}], 0.5)
            b.egress("steady_storm", outage(kinds=("Down", "Latency"), services=25, instances=400), 20.0)
            storm200 = outage(kinds=("Down", "Latency", "Errors", "Saturation"), services=50, instances=2)
            b.egress("storm200", storm200, 1.0)
            b.egress("storm200_folded", storm200, 1.0, storm=(20, "1m"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(),
               "platform": platform.platform(), "cpu": _cpu_model()}
    result = {"machine": machine, "quick": args.quick, "rows": b.rows, "notes": b.notes,
              "seconds": round(time.time() - started, 1)}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    print(f"done in {result['seconds']} s; results in {out / 'results.json'}")
    return 0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    raise SystemExit(main())
