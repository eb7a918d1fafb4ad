"""Alert storms as Alertmanager would send them, for the e2e tests and the benchmarks."""

from __future__ import annotations

import aiohttp
import orjson


def outage(kinds: tuple[str, ...] = ("Down", "Latency", "Errors"), services: int = 20,
           instances: int = 10) -> list[dict[str, object]]:
    """len(kinds) * services groups (alertname, service) of `instances` alerts each."""
    return [{"labels": {"alertname": kind, "service": f"svc{s}", "instance": f"i{i}"},
             "annotations": {"summary": f"{kind} on svc{s}/i{i}"}, "fingerprint": f"{kind}-{s}-{i}"}
            for kind in kinds for s in range(services) for i in range(instances)]


def am_body(alerts: list[dict[str, object]], status: str) -> bytes:
    return orjson.dumps({"version": "4", "status": status, "receiver": "proxy", "alerts": [
        {**a, "status": status, "startsAt": "2026-11-22T10:00:00Z",
         "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-22T10:05:00Z"}
        for a in alerts]})


async def post_batches(url: str, alerts: list[dict[str, object]], status: str,
                       batch: int = 64) -> list[tuple[list[str], int]]:
    """Post in batches; returns (fingerprints, HTTP status) per batch, never raising on
    an HTTP error or a refused connection (status 0)."""
    out: list[tuple[list[str], int]] = []
    async with aiohttp.ClientSession(headers={"Content-Type": "application/json"},
                                     timeout=aiohttp.ClientTimeout(total=10)) as s:
        for i in range(0, len(alerts), batch):
            chunk = alerts[i:i + batch]
            fps = [str(a["fingerprint"]) for a in chunk]
            try:
                async with s.post(url, data=am_body(chunk, status)) as r:
                    await r.read()
                    out.append((fps, r.status))
            except (aiohttp.ClientError, TimeoutError):
                out.append((fps, 0))
    return out


def fingerprints_in_triggers(triggers: list[dict[str, object]]) -> set[str]:
    """The instance fingerprints each trigger's custom_details lists."""
    seen: set[str] = set()
    for t in triggers:
        details = t["payload"]["custom_details"]  # type: ignore[index]
        for a in details["alerts"]:  # type: ignore[index]
            lb = a["labels"]
            seen.add(f"{lb['alertname']}-{lb['service'][3:]}-{lb['instance'][1:]}")
    return seen
