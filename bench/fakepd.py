"""The tests' fake PagerDuty as a process of its own, for the benchmarks.

Writes one JSON line per received event to the file named by argv[2]."""

from __future__ import annotations

import asyncio
import sys

import orjson

from tests.support.fakepd import FakePagerDuty


async def main() -> None:
    pd = FakePagerDuty()
    await pd.start(int(sys.argv[1]))
    seen = 0
    with open(sys.argv[2], "ab") as out:
        while True:
            await asyncio.sleep(0.05)
            out.writelines(orjson.dumps({"at": r.at, "status": r.status, "action": r.action,
                                        "dedup_key": r.dedup_key,
                                        "severity": (r.body.get("payload") or {}).get("severity"),
                                        "routing_key": r.body.get("routing_key", "")}) + b"\n" for r in pd.received[seen:])
            seen = len(pd.received)
            out.flush()


if __name__ == "__main__":
    asyncio.run(main())
