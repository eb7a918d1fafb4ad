"""The real proxy as the durability tests run it (any --store), and senders that retry as
Alertmanager does."""

from __future__ import annotations

import asyncio

from tests.conftest import write_rules
from tests.support.storm import fingerprints_in_triggers, post_batches

RULES = """
defaults:
  routing_key: ${PD_ROUTING_KEY}
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
  on_growth: update
"""


def start(proxy_process, tmp_path, store: str, name: str, port: int, upstream: str):
    rules = write_rules(tmp_path / "rules", RULES)
    return proxy_process("--listen", f"127.0.0.1:{port}", "--rules", str(rules), "--store", store,
                         "--upstream", upstream, "--send-timeout", "2", name=name)


async def until_accepted(url: str, alerts: list[dict[str, object]], status: str,
                         answers: list[int] | None = None) -> set[str]:
    """Post like Alertmanager does: retry every batch until it is answered 2xx."""
    done: set[str] = set()
    for _ in range(200):
        todo = [a for a in alerts if a["fingerprint"] not in done]
        if not todo:
            return done
        for fps, st in await post_batches(url, todo, status, batch=20):
            if answers is not None:
                answers.append(st)
            if st == 200:
                done.update(fps)
        await asyncio.sleep(0.2)
    raise AssertionError("alerts were never accepted")


def all_resolved(pd) -> bool:
    seq = pd.by_dedup()
    return bool(seq) and all(actions[-1] == "resolve" for actions in seq.values())


def paged(pd) -> set[str]:
    return fingerprints_in_triggers([r.body for r in pd.accepted() if r.action == "trigger"])
