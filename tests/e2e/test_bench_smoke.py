"""A short run of the benchmark, so that it cannot rot (the figures are not asserted)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (tests/run.sh installs it)")


def test_benchmark_quick_run(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(tmp_path)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = json.loads((tmp_path / "results.json").read_text())
    whats = {row["what"] for row in result["rows"]}
    assert {"proxy memory, 64 alert(s)/request", "proxy redis, 64 alert(s)/request",
            "bare aiohttp+orjson, 1 alert/request"} <= whats
    for row in result["rows"]:
        assert row["requests"] > 0 and row["errors"] == 0, (row, r.stdout[-3000:])
        if row["non2xx"] and "refused" in row:
            # at saturation on a loaded machine a store call may outlast its timeout: the
            # proxy then answers 503 (retry later; nothing accepted is lost), and only that,
            # rarely (a CI run once saw 4 of 382 requests at 64 alerts each on Redis)
            assert set(row["refused"]) == {"503"} and sum(row["refused"].values()) >= row["non2xx"] and row["non2xx"] <= row["requests"] // 50, row
        else:
            assert row["non2xx"] == 0, (row, r.stdout[-3000:])
    redis_rows = [r for r in result["rows"] if "redis_evalsha_per_req" in r]
    assert redis_rows and all(r["redis_evalsha_per_req"] < 1.5 for r in redis_rows)
    cascade = result["notes"]["egress_cascade"]
    assert cascade["events"] == 2 * cascade["groups"] and cascade["429s"] == 0


def test_scale_flush_only_quick_run(tmp_path):
    out = tmp_path / "scale.json"
    # 3,000 groups: the store's process spends ~100 ms on them, ten of /proc's 10 ms ticks (at
    # 300 it sometimes read 0)
    r = subprocess.run([sys.executable, "-m", "bench.scale", "--sizes", "3000", "--flush-only", "1",
                        "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads(out.read_text())["summary"]
    assert set(summary) == {"memory/3000", "sqlite/3000", "redis/3000"}
    assert all(s["flush_groups_per_s"]["median"] > 0 for s in summary.values())
    for kind in ("sqlite", "redis"):  # the store's own process (SQLite's, Redis), from /proc
        assert summary[f"{kind}/3000"]["flush_store_cpu_us_per_group"]["median"] > 0
    assert "flush_store_cpu_us_per_group" not in summary["memory/3000"]
