"""proxy/together.py: the calls of one turn of the event loop share one run, at most MOST
items, and each caller gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from proxy.together import MOST, Together


class Runs:
    def __init__(self, refuse: str = "") -> None:
        self.calls: list[list[str]] = []
        self.refuse = refuse

    async def __call__(self, items: Sequence[str]) -> None:
        self.calls.append(list(items))
        await asyncio.sleep(0)  # a store call that waits
        if self.refuse and self.refuse in items:
            raise ValueError(f"refused {self.refuse}")


async def test_calls_of_one_turn_share_one_run_in_their_order():
    runs = Runs()
    t = Together(runs)
    await asyncio.gather(*(t("k", [f"a{i}"]) for i in range(5)))
    assert runs.calls == [[f"a{i}" for i in range(5)]]
    await t("k", ["b"])  # alone in its turn
    assert runs.calls[-1] == ["b"]


async def test_keys_are_apart_and_large_calls_go_alone_and_a_run_holds_most_items():
    runs = Runs()
    t = Together(runs)
    big = [f"x{i}" for i in range(MOST)]
    await asyncio.gather(t("k", ["a"]), t("j", ["b"]), t("k", big), t("k", ["c"]))
    assert sorted(runs.calls) == sorted([["a", "c"], ["b"], big])
    runs.calls.clear()
    await asyncio.gather(*(t("k", [f"{i}", f"{i}'"]) for i in range(MOST)))  # 2 * MOST items
    assert [len(c) for c in runs.calls] == [MOST, MOST]


async def test_a_failure_is_its_callers_alone():
    runs = Runs(refuse="bad")
    t = Together(runs)
    out = await asyncio.gather(t("k", ["a"]), t("k", ["bad"]), t("k", ["c"]), return_exceptions=True)
    assert out[0] is None and out[2] is None
    assert isinstance(out[1], ValueError) and str(out[1]) == "refused bad"
    # the shared run, then each alone: the others' first, the leader's last
    assert runs.calls == [["a", "bad", "c"], ["bad"], ["c"], ["a"]]
    with pytest.raises(ValueError):  # the leader's own failure is raised to it
        await asyncio.gather(t("k", ["bad"]), t("k", ["d"]))


async def test_callers_of_a_cancelled_leader_are_told_their_alerts_were_not_stored():
    from proxy.errors import StoreError

    started = asyncio.Event()

    async def slow(items: Sequence[str]) -> None:
        started.set()
        await asyncio.sleep(10)

    t = Together(slow)
    lead = asyncio.ensure_future(t("k", ["a"]))
    other = asyncio.ensure_future(t("k", ["b"]))
    await started.wait()
    lead.cancel()
    with pytest.raises(StoreError, match="send it again"):
        await other


async def test_callers_that_joined_a_leader_cancelled_before_its_call_are_told_too():
    from proxy.errors import StoreError

    runs = Runs()
    t = Together(runs)
    lead = asyncio.ensure_future(t("k", ["a"]))
    other = asyncio.ensure_future(t("k", ["b"]))
    await asyncio.sleep(0)  # both have run: the leader waits for the turn's others, one joined
    lead.cancel()
    with pytest.raises(StoreError, match="send it again"):
        await asyncio.wait_for(other, 5)  # (it waited for ever)
    assert runs.calls == [] and lead.cancelled()
    await t("k", ["c"])  # the next turn leads a batch of its own
    assert runs.calls == [["c"]]
