"""How fast the console answers with many open groups: `python -m bench.console
[--groups 10000] [--stores memory,sqlite,redis] [--screenshot docs/console-overview.png]`.

Starts the proxy on each store, opens `--groups` groups (one alert each, 64 a request),
then asks every console page 20 times and prints p50/p99 in ms. Not a timed test: the
figures go to bench/RESULTS.md by hand."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Bench
from tests.support.net import free_port
from tests.support.redis_server import RedisServer
from tests.support.storm import post_batches

PAGES = ["/", "/groups", "/groups?page=50", "/groups?q=service%3Dsvc3", "/outbox", "/rules"]


async def fill(base: str, n: int) -> None:
    alerts = [{"labels": {"alertname": f"Check{i % 37}", "service": f"svc{i % 20}", "instance": f"i{i}",
                          "severity": ("critical", "warning", "info")[i % 3]},
               "annotations": {"summary": f"check {i} failing"}, "fingerprint": f"c{i}"} for i in range(n)]
    for status in {st for _, st in await post_batches(base + "/v1/alertmanager", alerts, "firing", 64)}:
        assert status == 200, status


async def measure(base: str) -> dict[str, tuple[float, float]]:
    out = {}
    async with aiohttp.ClientSession() as s:
        for path in PAGES:
            times = []
            for _ in range(20):
                t = time.perf_counter()
                async with s.get(base + path) as r:
                    await r.read()
                    assert r.status == 200, (path, r.status)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            out[path] = (statistics.median(times), times[-1])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--stores", default="memory,sqlite,redis")
    ap.add_argument("--screenshot", default=None, help="save the overview as a PNG (needs chromium)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="alert-proxy-console-") as tmp:
        work = Path(tmp)
        b = Bench(False, work)
        for kind in args.stores.split(","):
            server = None
            store = {"memory": "memory://", "sqlite": f"sqlite://{work}/console.db"}.get(kind, "")
            if kind == "redis":
                server = RedisServer(work / "redis", free_port())
                server.start()
                store = server.url
            try:
                with b.proxy(store, gw="1h", group_by="alertname, instance") as (base, _):
                    t = time.perf_counter()
                    asyncio.run(fill(base, args.groups))
                    print(f"{kind}: {args.groups} groups opened in {time.perf_counter() - t:.1f} s", flush=True)
                    for path, (p50, worst) in asyncio.run(measure(base)).items():
                        print(f"  {kind:7s} {path:28s} p50 {p50:7.1f} ms   max {worst:7.1f} ms", flush=True)
                    if args.screenshot and kind == "memory":
                        asyncio.run(shoot(base, args.screenshot))
            finally:
                if server:
                    server.stop()
    return 0


async def shoot(base: str, path: str) -> None:
    import shutil

    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=shutil.which("chromium"), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(base + "/")
        await page.screenshot(path=path)
        await browser.close()


if __name__ == "__main__":
    raise SystemExit(main())
