"""The JSON log lines, and when they reach the stream."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from proxy import logs
from proxy.logs import setup_logging


@pytest.fixture(autouse=True)
def as_it_was() -> Iterator[None]:
    """The logger as other tests find it (caplog needs it to propagate)."""
    root = logging.getLogger("alert_proxy")
    kept = root.handlers[:], root.level, root.propagate
    yield
    root.handlers[:], root.level, root.propagate = kept


@pytest.fixture
def logfile(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "log"
    with path.open("w", buffering=1 << 20) as stream:  # a line is on disk once the handler flushes
        setup_logging("info", stream)
        yield path


def ours_only() -> None:
    """pytest attaches its capture handlers to every logger that does not propagate when a
    test starts; without them the logger is as setup_logging made it, as in `serve`."""
    root = logging.getLogger("alert_proxy")
    root.handlers[:] = [h for h in root.handlers if isinstance(h, logs.LineHandler)]


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_text().splitlines()]


def test_a_line_is_one_json_object(logfile: Path) -> None:
    logging.getLogger("alert_proxy").info("group flushed", extra={"fields": {"dedup_key": "k"}})
    [line] = lines(logfile)
    assert line["msg"] == "group flushed" and line["dedup_key"] == "k" and line["level"] == "info"
    assert str(line["ts"]).endswith("Z") and len(str(line["ts"])) == len("2026-11-23T20:00:00.000Z")


async def test_in_the_loop_lines_are_flushed_once_per_turn(logfile: Path) -> None:
    log = logging.getLogger("alert_proxy")
    for i in range(100):
        log.info("group flushed", extra={"fields": {"n": i}})
    assert lines(logfile) == []  # still in the stream's buffer
    await asyncio.sleep(0)  # the loop's turn ends
    assert [line["n"] for line in lines(logfile)] == list(range(100))
    log.warning("PagerDuty answered 429")
    assert lines(logfile)[-1]["msg"] == "PagerDuty answered 429"  # at once


def test_outside_a_loop_a_line_is_flushed_at_once(logfile: Path) -> None:
    logging.getLogger("alert_proxy").info("rules loaded")
    assert lines(logfile)[0]["msg"] == "rules loaded"


def test_a_loop_that_ends_before_its_turn_does_not_hold_later_lines(logfile: Path) -> None:
    async def log_and_stop() -> None:
        logging.getLogger("alert_proxy").info("last line of the loop")
        asyncio.get_running_loop().stop()  # the flush scheduled for this turn never runs

    loop = asyncio.new_event_loop()
    loop.create_task(log_and_stop())
    loop.run_forever()
    loop.close()
    logging.getLogger("alert_proxy").info("after the loop")
    assert [line["msg"] for line in lines(logfile)] == ["last line of the loop", "after the loop"]

    async def in_a_new_loop() -> None:
        logging.getLogger("alert_proxy").info("in a new loop")
        await asyncio.sleep(0)
        assert lines(logfile)[-1]["msg"] == "in a new loop"

    asyncio.run(in_a_new_loop())


async def test_a_thread_does_not_wait_for_the_loops_turn(logfile: Path) -> None:
    """A flush is scheduled in this loop; a line from another thread is flushed at once
    all the same (that thread has no loop whose turn would flush it)."""
    log = logging.getLogger("alert_proxy")
    log.info("in the loop")
    thread = threading.Thread(target=log.info, args=("in a thread",))
    thread.start()
    thread.join()  # the loop's turn has not ended
    assert [line["msg"] for line in lines(logfile)] == ["in the loop", "in a thread"]


def test_setting_up_again_keeps_the_lines_written_so_far(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w", buffering=1 << 20) as stream:
        setup_logging("info", stream)

        async def one_line() -> None:
            logging.getLogger("alert_proxy").info("before")

        loop = asyncio.new_event_loop()
        loop.run_until_complete(one_line())  # ends before the loop's flush runs
        loop.close()
        setup_logging("info", stream)
        assert lines(path)[0]["msg"] == "before"


@pytest.mark.parametrize("name", ["alert_proxy", "alert_proxy.sender"])
async def test_a_line_written_directly_is_the_line_logging_writes(logfile: Path, name: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    ours_only()
    log = logging.getLogger(name)
    fields = {"dedup_key": "k", "actions": ["trigger"], "held": None, "firing": 1}
    log.info("group flushed", extra={"fields": fields})
    made: list[logging.LogRecord] = []
    monkeypatch.setattr(logging.Logger, "makeRecord", lambda *a, **k: made.append(a[1]))  # type: ignore[misc]
    logs.info(log, "group flushed", fields)
    assert made == []  # no LogRecord: written directly
    await asyncio.sleep(0)  # the direct line too waits for the loop's turn
    std, direct = lines(logfile)
    assert std.pop("ts") and direct.pop("ts")
    assert direct == std == {"level": "info", "logger": name, "msg": "group flushed", **fields}


def test_a_line_goes_the_standard_way_when_the_logger_is_not_as_set_up(logfile: Path) -> None:
    ours_only()
    log = logging.getLogger("alert_proxy")
    seen: list[str] = []

    def keep(record: logging.LogRecord) -> bool:
        seen.append(record.getMessage())
        return record.getMessage() != "dropped"

    log.addFilter(keep)  # a filter sees every record, direct or not
    try:
        logs.info(log, "kept", {"n": 1})
        logs.info(log, "dropped", {"n": 2})
    finally:
        log.removeFilter(keep)
    log.setLevel("WARNING")
    logs.info(log, "below the level", {"n": 3})
    assert seen == ["kept", "dropped"]
    assert [line["msg"] for line in lines(logfile)] == ["kept"]


def test_a_formatter_set_later_formats_every_line(logfile: Path) -> None:
    ours_only()
    log = logging.getLogger("alert_proxy")
    log.handlers[0].setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logs.info(log, "group flushed", {"n": 1})
    assert logfile.read_text() == "INFO group flushed\n"
